//! End-to-end tests: the real server on port 0, real gRPC clients, real
//! tokens, a real database. Every scenario runs on SQLite, and on PostgreSQL
//! when `REFNET_TEST_DATABASE_URL` is set (each test in its own database).
//!
//! One test binary keeps link time down; scenarios are grouped by module.

#![allow(
    unreachable_pub,
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used
)]

mod common;

mod access;
mod at_rest;
mod audit;
mod auth;
mod browser;
mod cli;
mod decisions;
mod deploy;
mod deployed;
mod desk;
mod erasure;
mod faults;
mod grpc_web;
mod history;
mod intake;
mod keys;
mod leak;
mod metrics;
mod pg;
mod processes;
mod protection;
mod readme;
mod redaction;
mod registry;
mod routing;
mod server;
mod statistics;
mod tls;
mod trace;
mod triage;
mod validation;
mod web;
mod webhooks;
