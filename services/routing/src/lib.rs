//! RoutingService: hands each referral to the agencies that must act, and
//! carries the handoff lifecycle.
//!
//! - [`rules`]: the rule set, as data.
//! - [`worker`]: consumes the event log and creates handoffs, exactly once
//!   per referral, agency kind and rule-set version.
//! - [`service`]: the inbox and the handoff transitions.
//!
//! Still to come (the rest of the routing issue): declining, completing,
//! withdrawing and reassigning handoffs, deadlines and escalation, threads and
//! the timeline, live streams, and LISTEN/NOTIFY wake-ups across processes;
//! those RPCs answer UNIMPLEMENTED until then.

pub mod deadlines;
pub mod decisions;
pub mod lifecycle;
pub mod messages;
pub mod rules;
pub mod service;
pub mod timeline;
pub mod watch;
pub mod worker;

use std::sync::Arc;

use refnet_api::v1::routing_service_server::RoutingServiceServer;
use refnet_core::AppContext;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "refnet.v1.RoutingService";

/// The RoutingService over `ctx`, ready to mount.
pub fn service(ctx: &AppContext) -> RoutingServiceServer<service::Routing> {
    RoutingServiceServer::new(service::Routing::new(ctx.clone()))
}

/// The rule set in force: the configured file, else the compiled-in rules.
pub fn rules(ctx: &AppContext) -> Result<Arc<rules::RuleSet>, rules::RulesError> {
    Ok(Arc::new(match &ctx.config().routing_rules_file {
        Some(file) => rules::RuleSet::load(file)?,
        None => rules::RuleSet::default_rules()?,
    }))
}
