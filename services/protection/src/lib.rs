//! WitnessProtectionService: police or prosecution ask the Witness Protection
//! Agency to protect a victim-witness; the WPA assesses, grants interim
//! measures, admits (with a pseudonym) or declines, records measures in force
//! and closes. From interim measures or admission on, every viewer but the WPA
//! sees the subject through the redaction policy's protected override, in
//! every service (the subject's protected state lives beside its sealed
//! identity, where every reply's redaction reads it).

pub mod deadlines;
pub mod service;
pub mod steps;
pub mod store;
pub mod watch;

use refnet_api::v1::{
    self as pb,
    witness_protection_service_server::{WitnessProtectionService, WitnessProtectionServiceServer},
};
use refnet_core::AppContext;
use refnet_core::boundary::{Call, respond};
use tonic::{Request, Response, Status};

pub use service::Protection;
pub use steps::Step;

/// Starts the background task of a process serving the
/// WitnessProtectionService: the deadline worker (unless `routing_worker` is
/// off, which stops every deadline worker), stopping between steps once
/// [`AppContext::begin_shutdown`] is called.
pub fn background(ctx: &AppContext) -> Vec<tokio::task::JoinHandle<()>> {
    if !ctx.config().routing_worker {
        return Vec::new();
    }
    let stop = {
        let ctx = ctx.clone();
        async move { ctx.shutting_down().await }
    };
    vec![tokio::spawn(
        deadlines::DeadlineWorker::new(ctx.clone()).run(stop),
    )]
}

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "refnet.v1.WitnessProtectionService";

/// The WitnessProtectionService over `ctx`, ready to mount.
pub fn service(ctx: &AppContext) -> WitnessProtectionServiceServer<Protection> {
    WitnessProtectionServiceServer::new(Protection::new(ctx.clone()))
        .max_decoding_message_size(ctx.config().max_request_bytes)
}

#[tonic::async_trait]
impl WitnessProtectionService for Protection {
    async fn submit_protection_request(
        &self,
        request: Request<pb::SubmitProtectionRequestRequest>,
    ) -> Result<Response<pb::ProtectionRequest>, Status> {
        respond(self.submit(Call::open(request)?).await)
    }

    async fn get_protection_request(
        &self,
        request: Request<pb::GetProtectionRequestRequest>,
    ) -> Result<Response<pb::ProtectionRequest>, Status> {
        respond(self.get(Call::open(request)?).await)
    }

    async fn list_protection_requests(
        &self,
        request: Request<pb::ListProtectionRequestsRequest>,
    ) -> Result<Response<pb::ListProtectionRequestsResponse>, Status> {
        respond(self.list(Call::open(request)?).await)
    }

    async fn withdraw_protection_request(
        &self,
        request: Request<pb::ProtectionStepRequest>,
    ) -> Result<Response<pb::ProtectionRequest>, Status> {
        respond(self.step(Call::open(request)?, Step::Withdraw).await)
    }

    async fn begin_assessment(
        &self,
        request: Request<pb::ProtectionStepRequest>,
    ) -> Result<Response<pb::ProtectionRequest>, Status> {
        respond(self.step(Call::open(request)?, Step::BeginAssessment).await)
    }

    async fn grant_interim_measures(
        &self,
        request: Request<pb::ProtectionStepRequest>,
    ) -> Result<Response<pb::ProtectionRequest>, Status> {
        respond(
            self.step(Call::open(request)?, Step::GrantInterimMeasures)
                .await,
        )
    }

    async fn admit_to_programme(
        &self,
        request: Request<pb::ProtectionStepRequest>,
    ) -> Result<Response<pb::ProtectionRequest>, Status> {
        respond(self.step(Call::open(request)?, Step::Admit).await)
    }

    async fn decline_request(
        &self,
        request: Request<pb::ProtectionStepRequest>,
    ) -> Result<Response<pb::ProtectionRequest>, Status> {
        respond(self.step(Call::open(request)?, Step::Decline).await)
    }

    async fn record_measure(
        &self,
        request: Request<pb::RecordMeasureRequest>,
    ) -> Result<Response<pb::ProtectionRequest>, Status> {
        respond(self.record_measure(Call::open(request)?).await)
    }

    async fn watch_protection_requests(
        &self,
        request: Request<pb::WatchProtectionRequestsRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::ProtectionRequestEvent>>, Status> {
        let (principal, call, req) = Call::open(request)?.parts();
        let after = watch::start(self.ctx(), &principal, &req).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let open = self
            .ctx()
            .metrics()
            .stream_opened("WatchProtectionRequests");
        let protection = self.clone();
        tokio::spawn(async move {
            watch::run(protection, principal, call, after, tx).await;
            drop(open);
        });
        Ok(Response::new(refnet_core::boundary::stream(rx)))
    }

    async fn close_protection(
        &self,
        request: Request<pb::ProtectionStepRequest>,
    ) -> Result<Response<pb::ProtectionRequest>, Status> {
        respond(self.step(Call::open(request)?, Step::Close).await)
    }
}

/// Runs the WitnessProtectionService alone until SIGTERM or Ctrl-C (`refnet-protection`,
/// `refnet protection`): production, on PostgreSQL.
pub async fn run(args: refnet_core::server::StandaloneArgs) -> anyhow::Result<()> {
    use refnet_core::server::run_standalone;
    run_standalone("refnet-protection", args, &[SERVICE_NAME], |ctx, routes| {
        routes.add_service(service(ctx));
        Ok(background(ctx))
    })
    .await
}
