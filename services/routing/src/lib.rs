//! RoutingService: hands each referral to the agencies that must act, and
//! carries the handoff lifecycle.
//!
//! - [`rules`]: the rule set, as data.
//! - [`worker`]: consumes the event log and creates handoffs, exactly once
//!   per referral, agency kind and rule-set version.
//! - [`service`]: the inbox, the handoff transitions and reassignment;
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
pub mod decisions;
pub(crate) mod hub;
pub mod lifecycle;
pub mod messages;
pub mod rules;
pub mod sampler;
pub mod service;
pub mod timeline;
pub mod triage;
pub mod watch;
pub mod webhooks;
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

/// The rule set in force: the configured file, else the compiled-in rules.
pub fn rules(ctx: &AppContext) -> Result<Arc<rules::RuleSet>, rules::RulesError> {
    Ok(Arc::new(match &ctx.config().routing_rules_file {
        Some(file) => rules::RuleSet::load(file)?,
        None => rules::RuleSet::default_rules()?,
    }))
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
        let worker = worker::RoutingWorker::new(ctx.clone(), rules(ctx)?);
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
