//! The service boundary: every reply leaves through [`reply`].
//!
//! Handlers build full replies from domain data and hand them here with what
//! they are [`Concerning`]: a referral (the boundary resolves its subject, the
//! viewer's relation and the identifiers free text is scanned for), a subject
//! context already resolved for a batch, or nothing. A reply that holds free
//! text and is about nothing is refused (INTERNAL): free text can only be
//! redacted with its subject's identifiers. This applies the viewer's policy through the
//! [`Redactor`](crate::redact::Redactor), appends the audit record when
//! identity or location was revealed, and returns a [`Reply`], the only value
//! a service's RPC method can turn into a response. A handler cannot skip it:
//! `Reply` has no public constructor.

use refnet_api::redact::Redact;
use uuid::Uuid;

pub use crate::subjects::SubjectContext;
use crate::{
    AppContext,
    audit::AuditEntry,
    auth::Principal,
    error::{ServiceError, ServiceResult},
    redact::Redactor,
};

/// A redacted reply, ready to send.
#[derive(Debug)]
pub struct Reply<T>(T);

impl<T> Reply<T> {
    /// The response to send.
    pub fn into_response(self) -> tonic::Response<T> {
        tonic::Response::new(self.0)
    }

    /// The redacted message, for a reply built of redacted parts (a page of
    /// stream items) or a test.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// A call as a handler receives it: who is calling (authenticated and
/// permitted by the auth layer before any handler runs), which RPC (for the
/// audit record) and the message.
#[derive(Debug)]
pub struct Call<T> {
    /// The caller.
    pub principal: Principal,
    /// The RPC and trace context.
    pub info: CallInfo,
    /// The request message.
    pub message: T,
}

impl<T> Call<T> {
    /// Opens `request`: UNAUTHENTICATED when the auth layer left no principal.
    pub fn open(request: tonic::Request<T>) -> ServiceResult<Self> {
        let principal = Principal::of(&request)?.clone();
        let info = CallInfo::of(&request);
        Ok(Self {
            principal,
            info,
            message: request.into_inner(),
        })
    }

    /// Who, which RPC and the message, as a handler's first line binds them.
    pub fn parts(self) -> (Principal, CallInfo, T) {
        (self.principal, self.info, self.message)
    }
}

/// What a gRPC adapter returns: the reply, or the error mapped to its status
/// in one place ([`ServiceError`]'s `From` for `tonic::Status`).
pub fn respond<T>(outcome: ServiceResult<Reply<T>>) -> Result<tonic::Response<T>, tonic::Status> {
    outcome
        .map(Reply::into_response)
        .map_err(tonic::Status::from)
}

/// What a reply concerns, for its redaction.
#[derive(Debug, Clone, Copy)]
pub enum Concerning<'a> {
    /// One referral: the boundary resolves its subject for the viewer.
    Referral(Uuid),
    /// A subject already resolved (by filing, or once for a batch of stream
    /// items about one referral).
    Subject(&'a SubjectContext),
    /// No one person (lists of codes and states, settings, statistics): the
    /// reply must hold no free text.
    Nothing,
}

/// A server stream whose items can only come from [`reply`]: handlers send
/// `Reply<T>` into the channel and this turns them into the stream tonic
/// sends, so no item leaves unredacted.
pub fn stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<Result<Reply<T>, tonic::Status>>,
) -> tonic::codegen::BoxStream<T> {
    use tokio_stream::StreamExt;
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx).map(|item| item.map(|r| r.0)))
}

/// The RPC being answered, for the audit record.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// e.g. `/refnet.v1.IntakeService/GetReferral`.
    pub rpc: String,
    /// The W3C trace id from `traceparent`, when the call carried one.
    pub trace_id: Option<String>,
}

impl CallInfo {
    /// Reads the method and trace context of `request`.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        let rpc = request
            .extensions()
            .get::<crate::auth::RpcPath>()
            .map(|p| p.0.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        let trace_id = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|tp| tp.split('-').nth(1))
            .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned);
        Self { rpc, trace_id }
    }
}

/// Redacts `message` for `viewer` and audits what it reveals.
pub async fn reply<T: Redact>(
    ctx: &AppContext,
    viewer: &Principal,
    call: &CallInfo,
    about: Concerning<'_>,
    mut message: T,
) -> ServiceResult<Reply<T>> {
    let resolved;
    let empty = SubjectContext::default();
    let subject = match about {
        Concerning::Referral(id) => {
            resolved = crate::subjects::context_for(ctx, id, &viewer.agency_id).await?;
            &resolved
        }
        Concerning::Subject(subject) => subject,
        Concerning::Nothing if message.holds_free_text() => {
            return Err(ServiceError::Internal(format!(
                "{}: a reply holding free text was built without its subject",
                call.rpc
            )));
        }
        Concerning::Nothing => &empty,
    };
    if let Some(id) = subject.referral_id {
        tracing::Span::current().record("refnet.referral_id", tracing::field::display(id));
    }
    let view = ctx
        .policy()
        .view(
            viewer.agency_kind,
            &viewer.roles,
            &subject.state,
            &subject.relation,
        )
        .map_err(|e| ServiceError::PermissionDenied(e.to_string()))?;
    let matcher = ctx.matchers().get(&subject.record);
    let outcome = Redactor::new(&view, &matcher).apply(&mut message);
    for ((class, action), n) in &outcome.tally {
        ctx.metrics()
            .record_redactions(class.as_str_name(), action.as_str_name(), *n);
    }
    if !outcome.revealed.is_empty() {
        ctx.audit()
            .append(
                ctx.db(),
                viewer,
                AuditEntry {
                    rpc: call.rpc.clone(),
                    referral_id: subject.referral_id,
                    field_paths: outcome.revealed.into_iter().collect(),
                    trace_id: call.trace_id.clone(),
                },
            )
            .await?;
    }
    Ok(Reply(message))
}
