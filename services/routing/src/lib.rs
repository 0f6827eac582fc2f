//! RoutingService: hands each referral to the agencies that must act, and
//! carries the handoff lifecycle.
//!
//! - [`rules`]: the rule set, as data.
//! - [`worker`]: consumes the event log and creates handoffs, exactly once
//!   per referral, agency kind and rule-set version.
//! - [`service`]: the inbox, the handoff transitions and reassignment, each
//!   state change through one `transition` module, handoffs on the wire by [`wire`];
//!   [`decisions`] (declines, checklists, notifications), [`messages`],
//!   [`timeline`] and [`watch`] (the live streams).
//! - [`triage`]: referrals nothing routed (no rule, no agency in reach,
//!   every handoff declined or withdrawn) wait for the filing agency's
//!   supervisors, with a routing deadline.
//! - [`deadlines`]: escalation of handoffs and triage past their deadlines.
//! - [`webhooks`]: agencies' webhooks and the outbox dispatcher that POSTs
//!   notifications to them, signed and retried.
//! - [`sampler`]: the database-sampled gauges (handoffs by state, overdue, lag).
//!
//! [`background`] starts the workers of a process that serves RoutingService.

pub mod deadlines;
pub(crate) mod decide;
pub mod decisions;
pub mod entities;
pub(crate) mod hub;
pub mod lifecycle;
pub(crate) mod manual;
pub mod messages;
pub mod rules;
pub mod sampler;
pub(crate) mod sent;
pub mod service;
pub mod standing;
pub mod timeline;
pub(crate) mod transition;
pub mod triage;
pub mod watch;
pub mod webhooks;
pub mod wire;
pub mod worker;

use std::sync::Arc;

use refnet_api::v1::routing_service_server::RoutingServiceServer;
use refnet_core::AppContext;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "refnet.v1.RoutingService";

/// The RoutingService over `ctx`, ready to mount.
pub fn service(ctx: &AppContext) -> RoutingServiceServer<service::Routing> {
    RoutingServiceServer::new(service::Routing::new(ctx.clone()))
        .max_decoding_message_size(ctx.config().max_request_bytes)
}

/// The process's rule set: loaded once, replaced by [`AppContext::reload`] (SIGHUP).
struct Rules(Arc<refnet_core::reload::Shared<rules::RuleSet>>);

/// Reads the configured rule file, else the compiled-in rules.
fn load_rules(file: Option<&std::path::Path>) -> Result<rules::RuleSet, rules::RulesError> {
    match file {
        Some(file) => rules::RuleSet::load(file),
        None => rules::RuleSet::default_rules(),
    }
}

/// The rule set in force in this process: the configured file (else the
/// compiled-in rules), loaded the first time any part of the process asks,
/// and replaced on reload only by a file that validates. The routing worker,
/// the deadline worker and every handler read this one version.
pub fn rules(ctx: &AppContext) -> Result<Arc<rules::RuleSet>, rules::RulesError> {
    let handle = ctx.shared(|| {
        let file = ctx.config().routing_rules_file.clone();
        let handle = Arc::new(refnet_core::reload::Shared::new(load_rules(
            file.as_deref(),
        )?));
        let reloaded = handle.clone();
        ctx.on_reload("routing rules", move || {
            let rules = load_rules(file.as_deref()).map_err(|e| e.to_string())?;
            let version = rules.version().to_owned();
            reloaded.replace(rules);
            Ok(version)
        });
        Ok::<_, rules::RulesError>(Rules(handle))
    })?;
    Ok(handle.0.current())
}

/// Starts the background tasks of a process serving RoutingService: the
/// routing worker, the deadline worker and the webhook dispatcher (unless
/// `routing_worker` is off)
/// and the metrics sampler. Each stops between steps once
/// [`AppContext::begin_shutdown`] is called; every step is one transaction,
/// so a checkpoint is committed or not at all.
pub fn background(ctx: &AppContext) -> Result<Vec<tokio::task::JoinHandle<()>>, rules::RulesError> {
    let stop = |ctx: &AppContext| {
        let ctx = ctx.clone();
        async move { ctx.shutting_down().await }
    };
    let mut tasks = vec![tokio::spawn(sampler::run(ctx.clone()))];
    if ctx.config().routing_worker {
        // Loaded (and validated) now, so a bad file stops the process at start.
        rules(ctx)?;
        let worker = worker::RoutingWorker::in_force(ctx.clone());
        let deadlines = deadlines::DeadlineWorker::new(ctx.clone());
        tasks.push(tokio::spawn(worker.run(stop(ctx))));
        tasks.push(tokio::spawn(deadlines.run(stop(ctx))));
        match webhooks::WebhookWorker::new(ctx.clone()) {
            Ok(webhooks) => tasks.push(tokio::spawn(webhooks.run(stop(ctx)))),
            Err(e) => tracing::error!(error = %e, "webhook dispatcher not started"),
        }
    }
    Ok(tasks)
}

/// Runs the RoutingService and its worker alone until SIGTERM or Ctrl-C (`refnet-routing`,
/// `refnet routing`): production, on PostgreSQL.
pub async fn run(args: refnet_core::server::StandaloneArgs) -> anyhow::Result<()> {
    use refnet_core::server::run_standalone;
    run_standalone("refnet-routing", args, &[SERVICE_NAME], |ctx, routes| {
        routes.add_service(service(ctx));
        Ok(background(ctx)?)
    })
    .await
}
