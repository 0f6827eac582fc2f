//! WitnessProtectionService: police or prosecution ask the Witness Protection
//! Agency to protect a victim-witness. Every method answers UNIMPLEMENTED until
//! the protection issue lands; the crate, contract and binary exist so
//! deployments and clients can be built against them now.

use refnet_api::v1::witness_protection_service_server::{
    WitnessProtectionService, WitnessProtectionServiceServer,
};
use refnet_core::AppContext;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "refnet.v1.WitnessProtectionService";

/// The WitnessProtectionService. The generated trait's default methods answer UNIMPLEMENTED.
#[derive(Clone)]
pub struct Protection {
    _ctx: AppContext,
}

impl WitnessProtectionService for Protection {}

/// The WitnessProtectionService over `ctx`, ready to mount.
pub fn service(ctx: &AppContext) -> WitnessProtectionServiceServer<Protection> {
    WitnessProtectionServiceServer::new(Protection { _ctx: ctx.clone() })
}
