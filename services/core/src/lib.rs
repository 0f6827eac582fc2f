//! refnet's shared library: what every service needs and nothing that belongs
//! to one service alone.
//!
//! - [`config`]: layered configuration (defaults, file, `REFNET_...` environment).
//! - [`auth`]: JWT verification against a JWKS and the tower layer that
//!   authenticates every call before any handler runs; [`principal`]: who is calling.
//! - [`devkeys`]: the development signing key that `refnet serve` generates.
//! - [`crypto`]: envelope encryption of identity and location (per-subject data
//!   keys wrapped by a master key), the blind index and authenticated page tokens.
//! - [`domain`]: validated newtypes built from requests with `TryFrom`.
//! - [`agencies`]: the registry of agencies that may call refnet.
//! - [`db`], [`entities`], [`events`]: storage, the shared tables and the event log.
//! - [`notify`]: notifications to an agency's supervisors or everyone in it.
//! - [`states`]: the stored states (referral, handoff, protection request) as enums.
//! - [`error`]: the one error type every service returns and its gRPC mapping.
//! - [`permissions`]: who may call which RPC, as data, checked before any handler.
//! - [`server`]: health, reflection, auth and graceful shutdown around a set of services.
//! - [`versioned`]: the one versioned change (update where version, event, reread).
//! - [`reload`]: data files loaded once per process, reloaded on SIGHUP.
//! - [`telemetry`]: tracing set-up.
//! - [`tls`]: TLS and mutual TLS on the listener, certificates reloaded on change.

pub mod access;
pub mod agencies;
pub mod announce;
pub mod audit;
pub mod auth;
pub mod boundary;
pub mod config;
pub mod context;
pub mod crypto;
pub mod db;
pub mod detect;
pub mod devkeys;
pub mod domain;
pub mod entities;
pub mod error;
pub mod events;
pub mod exit;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod paging;
pub mod permissions;
pub mod policy;
pub mod principal;
pub mod protected;
pub mod redact;
pub mod reload;
pub mod revocation;
pub mod server;
pub mod states;
pub mod subjects;
pub mod telemetry;
pub mod tls;
pub mod versioned;

pub use context::AppContext;
pub use error::{ServiceError, ServiceResult};
