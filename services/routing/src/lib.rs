//! RoutingService: handoffs of a referral to the agencies that must act and the
//! referral's message thread. Every method answers UNIMPLEMENTED until the
//! routing issue lands; the crate, contract and binary exist so deployments and
//! clients can be built against them now.

pub mod rules;

use refnet_api::v1::routing_service_server::{RoutingService, RoutingServiceServer};
use refnet_core::AppContext;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "refnet.v1.RoutingService";

/// The RoutingService. The generated trait's default methods answer UNIMPLEMENTED.
#[derive(Clone)]
pub struct Routing {
    _ctx: AppContext,
}

impl RoutingService for Routing {}

/// The RoutingService over `ctx`, ready to mount.
pub fn service(ctx: &AppContext) -> RoutingServiceServer<Routing> {
    RoutingServiceServer::new(Routing { _ctx: ctx.clone() })
}
