//! The one error type of refnet's services and the one place it becomes a gRPC
//! status.
//!
//! Handlers return [`ServiceError`]; [`ServiceError::into_status`] is the only
//! mapping to `tonic::Status`. Internal failures are logged with their cause and
//! answered with a bare `INTERNAL`, so no database message or identifier ever
//! reaches a client. Validation failures carry a `google.rpc.BadRequest` that
//! names every bad field.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A field that failed validation: its path in the request and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `draft.subject.phones[1]`.
    pub field: String,
    /// What is wrong, in words a desk officer's client can show.
    pub description: String,
}

/// Every error a refnet service can answer with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; every bad field is listed.
    #[error("invalid request: {} bad field(s)", .0.len())]
    InvalidArgument(Vec<FieldViolation>),
    /// No valid credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Authenticated, but the caller's role or agency may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Not found, or not visible to the caller (the two are never distinguished).
    #[error("not found")]
    NotFound,
    /// A concurrent change won: the expected version is stale.
    #[error("aborted: {0}")]
    Aborted(String),
    /// The operation does not apply in the current state.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// What the call would create exists already (the message names it).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The caller is over a rate limit; retry after the given time.
    #[error("rate limited ({scope}): retry after {retry_after:?}")]
    ResourceExhausted {
        /// "officer" or "agency".
        scope: &'static str,
        /// When a call would next be allowed.
        retry_after: std::time::Duration,
    },
    /// A dependency (database, key source) is unavailable; the call may be retried.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; details are logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The status an open stream ends with when the server shuts down: retryable,
/// and the client resumes from the cursor of the last item it received.
pub fn resumable_shutdown() -> Status {
    Status::unavailable(
        "refnet is shutting down; reconnect and resume from the cursor of the last item received",
    )
}

/// Optimistic concurrency: ABORTED unless the `what` ("handoff") the caller
/// read at `expected` is still at that version (`current`).
pub fn expect_version(what: &str, current: i64, expected: i64) -> ServiceResult<()> {
    if current == expected {
        Ok(())
    } else {
        Err(ServiceError::Aborted(format!(
            "{what} is at version {current}, not {expected}; re-read and retry"
        )))
    }
}

/// Optimistic concurrency: another change to the `what` committed first.
pub fn changed_concurrently(what: &str) -> ServiceError {
    ServiceError::Aborted(format!("{what} changed concurrently; re-read and retry"))
}

/// Result of a service operation.
pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// An internal failure with context for the log.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {err}"))
    }

    /// The gRPC status for this error. The only mapping in refnet.
    pub fn into_status(self) -> Status {
        match self {
            Self::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                let summary = violations
                    .iter()
                    .map(|v| v.field.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                details.set_bad_request(
                    violations
                        .into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!("invalid request: {summary}"),
                    details,
                )
            }
            Self::Unauthenticated(why) => Status::unauthenticated(why),
            Self::PermissionDenied(why) => Status::permission_denied(why),
            Self::NotFound => Status::not_found("not found"),
            Self::Aborted(why) => Status::aborted(why),
            Self::FailedPrecondition(why) => Status::failed_precondition(why),
            Self::AlreadyExists(why) => Status::already_exists(why),
            Self::ResourceExhausted { scope, retry_after } => {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(retry_after));
                Status::with_error_details(
                    Code::ResourceExhausted,
                    format!("too many calls for this {scope}; retry later"),
                    details,
                )
            }
            Self::Unavailable(why) => {
                tracing::warn!(error = %why, "dependency unavailable");
                Status::unavailable("service temporarily unavailable")
            }
            Self::Internal(why) => {
                tracing::error!(error = %why, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Self {
        err.into_status()
    }
}

/// The SQLSTATE of a database error, when the database gave one.
fn sql_state(err: &sea_orm::DbErr) -> Option<String> {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the connection under a statement was lost (I/O, a closed or
/// exhausted pool, a dead driver worker) rather than the statement failing.
fn connection_lost(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Tls(_)
        ),
        _ => false,
    }
}

impl From<sea_orm::DbErr> for ServiceError {
    fn from(err: sea_orm::DbErr) -> Self {
        // PostgreSQL broke a deadlock or a serialization conflict by failing
        // this transaction: nothing was written, and a retry can succeed.
        if let Some("40P01" | "40001") = sql_state(&err).as_deref() {
            return Self::Aborted("a concurrent change to the same records won; retry".to_owned());
        }
        // The database went away (restart, failover, network): the client
        // may retry; retries of writes are safe by their idempotency keys
        // and expected versions.
        if let Some(state) = sql_state(&err).as_deref()
            && (state.starts_with("08") || matches!(state, "57P01" | "57P02" | "57P03"))
        {
            return Self::Unavailable(format!("database: {err}"));
        }
        if connection_lost(&err) {
            return Self::Unavailable(format!("database: {err}"));
        }
        match err {
            sea_orm::DbErr::ConnectionAcquire(e) => Self::Unavailable(format!("database: {e}")),
            sea_orm::DbErr::Conn(e) => Self::Unavailable(format!("database: {e}")),
            other => Self::Internal(format!("database: {other}")),
        }
    }
}

impl From<sea_orm::TransactionError<ServiceError>> for ServiceError {
    fn from(err: sea_orm::TransactionError<ServiceError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

/// Collects field violations while a request is converted, so that one reply
/// names every bad field rather than the first.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the `expected_version` of a change request (required, 1 or more).
    pub fn expected_version(&mut self, raw: i64) -> Option<i64> {
        if raw >= 1 {
            Some(raw)
        } else {
            self.add(
                "expected_version",
                "is required (the version you read, 1 or more)",
            );
            None
        }
    }

    /// A repeated enum field of a list or filter: each value through `parse`
    /// (which gives `None` for UNSPECIFIED or unknown), a violation on
    /// `field[i]` for each it refuses.
    pub fn enum_list<T>(
        &mut self,
        field: &str,
        raw: &[i32],
        parse: impl Fn(i32) -> Option<T>,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            match parse(*r) {
                Some(value) => out.push(value),
                None => self.add(
                    format!("{field}[{i}]"),
                    format!("unknown or unspecified value {r}"),
                ),
            }
        }
        out
    }

    /// Records a violation.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Keeps the value of `result`, or records its error against `field`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else the collected violations.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> ServiceResult<T> {
        if self.0.is_empty() {
            value().ok_or_else(|| ServiceError::Internal("validated value missing".into()))
        } else {
            Err(ServiceError::InvalidArgument(self.0))
        }
    }

    /// A list call's page size: `default` for 0, else 1..=`max`; records a
    /// violation on `page_size` otherwise.
    pub fn page_size(&mut self, raw: i32, default: u64, max: u64) -> Option<u64> {
        match u64::try_from(raw) {
            Ok(0) => Some(default),
            Ok(n) if n <= max => Some(n),
            _ => {
                self.add("page_size", format!("must be between 1 and {max}"));
                None
            }
        }
    }

    /// The violations so far.
    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_lists_every_field() {
        let mut v = Violations::new();
        v.add("a", "bad a");
        v.add("b.c[0]", "bad c");
        let status = v.finish::<()>(|| Some(())).unwrap_err().into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|f| f.field.clone()).collect())
            .unwrap_or_default();
        assert_eq!(fields, vec!["a".to_owned(), "b.c[0]".to_owned()]);
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status = ServiceError::internal("db", "secret detail Wanjiru").into_status();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("Wanjiru"));
    }
}
