//! The desk client: `refnet referral`, `inbox`, `handoff`, `message`,
//! `timeline`, `protection`, `triage` and `notifications` call a running refnet server over gRPC with an
//! officer's bearer token, so a desk officer can file, read and act on
//! referrals without writing code.
//!
//! The client holds no policy of its own: what it prints is what the server
//! answered for the token's agency (already redacted), in an aligned table or
//! `key: value` block, or with `--json` as the reply in the proto3 JSON
//! mapping. A failed call prints its gRPC code and message and, for
//! `INVALID_ARGUMENT`, one line per field violation; the process then exits
//! non-zero. The token is sent as `authorization` metadata marked sensitive and
//! is never printed.

mod output;
mod protection_watch;
mod triage;

pub use triage::{NotificationsArgs, TriageArgs, notifications, triage};

use std::{io::Read as _, path::PathBuf, time::Duration};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use refnet_api::v1::{
    self as pb, intake_service_client::IntakeServiceClient,
    routing_service_client::RoutingServiceClient,
    witness_protection_service_client::WitnessProtectionServiceClient,
};
use tonic::{
    Code, Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use output::{Block, Proto, Table, enum_name, enum_names, time};

/// A bearer token. Its `Debug` leaves the value out, so no diagnostic prints it.
#[derive(Clone)]
pub(crate) struct Token(String);

impl From<String> for Token {
    fn from(value: String) -> Self {
        Self(value.trim().to_owned())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Where the server is, who is calling and how to print: the flags every desk
/// command takes (before or after its subcommand).
#[derive(Debug, Args)]
pub(crate) struct Connection {
    /// The refnet server (plain HTTP/2).
    #[arg(
        long,
        global = true,
        env = "REFNET_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Bearer token of the officer (a development server's: `refnet token`); required.
    #[arg(
        long,
        global = true,
        env = "REFNET_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<Token>,
    /// Print the reply as JSON (proto3 mapping, proto field names); `inbox watch`: one object per line.
    #[arg(long, global = true)]
    json: bool,
}

/// `refnet referral ...`.
#[derive(Debug, Args)]
pub struct ReferralArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: ReferralCommand,
}

#[derive(Debug, Subcommand)]
enum ReferralCommand {
    /// File a referral: FILE is a ReferralDraft in JSON (proto3 mapping; - reads standard input).
    File {
        /// The draft (JSON), or - for standard input.
        file: PathBuf,
        /// Idempotency key (8-128 of A-Z a-z 0-9 _ -); reuse the printed one to retry safely
        /// [default: a new one].
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Print only the reference code (for scripts: `REF=$(refnet referral file draft.json -q)`).
        #[arg(long, short, conflicts_with = "json")]
        quiet: bool,
    },
    /// Show one referral as your agency may see it.
    Show {
        /// Referral id or reference code (RN-YYYY-XXXXXX).
        referral: String,
    },
    /// List the referrals your agency is party to, newest first.
    List {
        /// Only referrals in this status (filed, routed, needs-routing, closed; repeat for several).
        #[arg(long, value_parser = referral_status)]
        status: Vec<i32>,
        #[command(flatten)]
        page: Page,
        /// Print only the reference codes, one per line.
        #[arg(long, short, conflicts_with = "json")]
        quiet: bool,
    },
    /// Close a referral no handoff is open on (a supervisor of the filing agency).
    Close {
        /// Referral id or reference code.
        referral: String,
        /// Why: assistance-declined, assisted-outside, duplicate, not-a-case or lost-contact.
        #[arg(long, value_parser = triage::close_reason)]
        reason: i32,
    },
}

/// `refnet inbox ...`.
#[derive(Debug, Args)]
pub struct InboxArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: InboxCommand,
}

#[derive(Debug, Subcommand)]
enum InboxCommand {
    /// List the handoffs addressed to your agency (listing records their delivery).
    List {
        /// Only handoffs in this state (e.g. delivered, acknowledged; repeat for several).
        #[arg(long = "state", value_parser = handoff_state)]
        states: Vec<i32>,
        #[command(flatten)]
        page: Page,
        /// Print only the handoff ids, one per line.
        #[arg(long, short, conflicts_with = "json")]
        quiet: bool,
    },
    /// Print your agency's new and changed handoffs as they happen, until Ctrl-C;
    /// when the server goes away, reconnect and resume after the last item.
    Watch {
        /// Resume after this cursor (printed on Ctrl-C, and in each --json line).
        #[arg(long)]
        cursor: Option<String>,
        /// Replay the inbox's whole history first.
        #[arg(long, conflicts_with = "cursor")]
        from_beginning: bool,
        /// Stop after printing this many items (e.g. `--from-beginning --count 1`
        /// waits for the first handoff) [default: until Ctrl-C].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
}

/// `refnet handoff ...`.
#[derive(Debug, Args)]
pub struct HandoffArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: HandoffCommand,
}

#[derive(Debug, Subcommand)]
enum HandoffCommand {
    /// Show one handoff your agency sent or received.
    Show {
        /// Handoff id (see `refnet inbox list`).
        id: String,
    },
    /// Acknowledge receipt of a handoff.
    Ack(HandoffTarget),
    /// Accept a handoff.
    Accept(HandoffTarget),
    /// Decline an acknowledged (or escalated) handoff.
    Decline {
        #[command(flatten)]
        target: HandoffTarget,
        /// Why (required; other parties see it redacted for them).
        #[arg(long)]
        reason: String,
    },
    /// Complete an accepted handoff (a checklist must be complete first).
    Complete(HandoffTarget),
    /// Withdraw a handoff your agency sent (after acceptance a reason is required;
    /// the recipient is told and keeps only what it saw before).
    Withdraw {
        #[command(flatten)]
        target: HandoffTarget,
        /// Why (other parties see it redacted for them).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Hand a referral to an agency by hand (a supervisor of a party agency; this
    /// is how a referral in `refnet triage list` gets routed).
    Create {
        /// Referral id or reference code.
        referral: String,
        /// The receiving agency's id.
        #[arg(long = "to")]
        to_agency_id: String,
        /// Why: one of the routing rules' purposes (`refnet rules check` lists the rules).
        #[arg(long)]
        purpose: String,
        /// Idempotency key [default: a new one].
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The handoffs your agency sent: to whom, state and deadlines, overdue first.
    Sent {
        /// Only handoffs in this state (repeat for several).
        #[arg(long = "state", value_parser = handoff_state)]
        states: Vec<i32>,
        #[command(flatten)]
        page: Page,
        /// Print only the handoff ids, one per line.
        #[arg(long, short, conflicts_with = "json")]
        quiet: bool,
    },
}

/// The handoff a transition acts on.
#[derive(Debug, Args)]
struct HandoffTarget {
    /// Handoff id (see `refnet inbox list`).
    id: String,
    /// The version you act on; a stale one fails with ABORTED [default: read the current one].
    #[arg(long)]
    version: Option<i64>,
}

/// `refnet message ...`.
#[derive(Debug, Args)]
pub struct MessageArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: MessageCommand,
}

#[derive(Debug, Subcommand)]
enum MessageCommand {
    /// Post a message on a referral's thread (every party reads it, redacted for them).
    Post {
        /// Referral id or reference code.
        referral: String,
        /// The message, or - for standard input.
        text: String,
        /// Idempotency key [default: a new one].
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

/// `refnet timeline REF`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    #[command(flatten)]
    connection: Connection,
    /// Referral id or reference code.
    referral: String,
}

/// `refnet protection ...`.
#[derive(Debug, Args)]
pub struct ProtectionArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: ProtectionCommand,
}

#[derive(Debug, Subcommand)]
enum ProtectionCommand {
    /// Ask the Witness Protection Agency to protect a referral's subject (police or prosecution).
    Request {
        /// Referral id or reference code.
        referral: String,
        /// Grounds for protection.
        #[arg(long)]
        grounds: String,
        /// Your threat assessment.
        #[arg(long)]
        threat_assessment: String,
        /// A measure requested (e.g. relocation, video-link-testimony, in-camera-hearing;
        /// repeat for several).
        #[arg(long = "measure", value_parser = measure, required = true)]
        measures: Vec<i32>,
        /// Urgency: low, normal, high or critical.
        #[arg(long, value_parser = urgency)]
        urgency: i32,
        /// Who threatens the witness, as far as known.
        #[arg(long, default_value = "")]
        threat_sources: String,
        /// Idempotency key [default: a new one].
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show one protection request (the WPA, or the requesting agency).
    Show {
        /// Request id.
        id: String,
    },
    /// Print protection requests as they are made, change state or pass a
    /// deadline (the WPA: all; others: their own), until Ctrl-C.
    Watch {
        /// Resume after this cursor (printed on Ctrl-C, and in each --json line).
        #[arg(long)]
        cursor: Option<String>,
        /// Replay every request's history first.
        #[arg(long, conflicts_with = "cursor")]
        from_beginning: bool,
        /// Stop after printing this many items [default: until Ctrl-C].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// List protection requests (the WPA: all; others: their own), newest first.
    List {
        /// Only requests in this state (e.g. submitted, admitted; repeat for several).
        #[arg(long = "state", value_parser = protection_state)]
        states: Vec<i32>,
        /// Only requests on this referral (id or reference code).
        #[arg(long)]
        referral: Option<String>,
        #[command(flatten)]
        page: Page,
    },
}

/// Paging flags of the list commands.
#[derive(Debug, Args)]
struct Page {
    /// Page size [default: the server's].
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    page_size: i32,
    /// The token printed under the previous page.
    #[arg(long, default_value = "", hide_default_value = true)]
    page_token: String,
}

fn referral_status(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.ReferralStatus", s)
}

fn handoff_state(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.HandoffState", s)
}

fn protection_state(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.ProtectionState", s)
}

fn measure(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.ProtectionMeasure", s)
}

fn urgency(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.Urgency", s)
}

/// Adds the officer's bearer token to every call.
#[derive(Clone)]
struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// A connection to the server with the officer's token.
struct Desk {
    channel: Channel,
    bearer: Bearer,
    server: String,
    json: bool,
}

impl Desk {
    async fn connect(connection: Connection) -> anyhow::Result<Self> {
        let Some(token) = connection.token.filter(|t| !t.0.is_empty()) else {
            bail!(
                "no token: pass --token TOKEN or set REFNET_TOKEN (a development server's tokens come \
                 from `refnet token --data-dir DIR --agency ID --role officer`)"
            );
        };
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.0).parse().map_err(|_| {
            anyhow!("the token is not a valid header value: it must be printable ASCII without line breaks")
        })?;
        value.set_sensitive(true);
        let server = if connection.server.contains("://") {
            connection.server
        } else {
            format!("http://{}", connection.server)
        };
        if !server.starts_with("http://") {
            bail!(
                "{server}: only plain http:// servers are supported (this client has no TLS; \
                 reach a TLS endpoint through a local tunnel)"
            );
        }
        let channel = Endpoint::from_shared(server.clone())
            .with_context(|| format!("{server} is not a server URL"))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("cannot reach refnet at {server}"))?;
        Ok(Self {
            channel,
            bearer: Bearer(value),
            server,
            json: connection.json,
        })
    }

    fn intake(&self) -> IntakeServiceClient<Authed> {
        IntakeServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    fn routing(&self) -> RoutingServiceClient<Authed> {
        RoutingServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    fn protection(&self) -> WitnessProtectionServiceClient<Authed> {
        WitnessProtectionServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// Prints `message` as JSON, or else the human form `human` makes of it.
    fn show<M: Proto>(
        &self,
        message: &M,
        human: impl FnOnce(&M) -> anyhow::Result<String>,
    ) -> anyhow::Result<()> {
        if self.json {
            output::print_json(&output::to_json(message)?)
        } else {
            output::emit(&human(message)?)
        }
    }
}

/// The reply of a call, or an error that reads `CODE: message` with the field violations.
trait Answer<T> {
    fn answer(self) -> anyhow::Result<T>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, Status> {
    fn answer(self) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| anyhow!(output::status_text(&status)))
    }
}

/// Values one per line (control characters removed), for `--quiet`.
fn lines<'a>(values: impl Iterator<Item = &'a String>) -> String {
    values.map(|v| output::clean(v) + "\n").collect()
}

/// A note for the person at the desk, on standard error (never fails).
fn note(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn new_key() -> String {
    format!("desk-{}", uuid::Uuid::new_v4().simple())
}

/// `text`, or standard input when it is `-`.
fn text_or_stdin(text: &str) -> anyhow::Result<String> {
    if text == "-" {
        let mut buffer = String::new();
        std::io::stdin()
            .read_to_string(&mut buffer)
            .context("reading standard input")?;
        Ok(buffer)
    } else {
        Ok(text.to_owned())
    }
}

/// A single object and what was withheld from it.
fn object_and_withheld<M: Proto>(
    message: &M,
    redactions: &[pb::Redaction],
) -> anyhow::Result<String> {
    let mut text = output::object(message)?.render();
    let withheld = output::withheld(redactions);
    if !withheld.is_empty() {
        text.push('\n');
        text.push_str(&withheld);
    }
    Ok(text)
}

/// The lines under a table: the next page, and how much was withheld.
fn footer(next_page_token: &str, redactions: usize) -> String {
    let mut text = String::new();
    if !next_page_token.is_empty() {
        text.push_str(&format!("next page: --page-token {next_page_token}\n"));
    }
    if redactions > 0 {
        text.push_str(&format!(
            "{redactions} field(s) withheld from your agency (--json lists them)\n"
        ));
    }
    text
}

/// `refnet referral file|show|list|close`.
pub async fn referral(args: ReferralArgs) -> anyhow::Result<()> {
    match args.command {
        ReferralCommand::File {
            file,
            idempotency_key,
            quiet,
        } => {
            let (name, text) = if file.as_os_str() == "-" {
                ("standard input".to_owned(), text_or_stdin("-")?)
            } else {
                (
                    file.display().to_string(),
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                )
            };
            let draft: pb::ReferralDraft = output::from_json(&text)
                .with_context(|| format!("{name}: not a ReferralDraft in JSON"))?;
            let desk = Desk::connect(args.connection).await?;
            let key = idempotency_key.unwrap_or_else(new_key);
            let reply = desk
                .intake()
                .file_referral(pb::FileReferralRequest {
                    idempotency_key: key.clone(),
                    draft: Some(draft),
                })
                .await
                .answer()?;
            if desk.json {
                note(&format!("idempotency key: {key}"));
            }
            if quiet {
                let referral = reply.referral.unwrap_or_default();
                return output::emit(&format!("{}\n", output::clean(&referral.reference_code)));
            }
            desk.show(&reply, |reply| filed(reply, &key))
        }
        ReferralCommand::Show { referral } => {
            let desk = Desk::connect(args.connection).await?;
            let reply = desk
                .intake()
                .get_referral(pb::GetReferralRequest { referral })
                .await
                .answer()?;
            desk.show(&reply, |reply| {
                let referral = reply.referral.clone().unwrap_or_default();
                let mut text = object_and_withheld(&referral, &reply.redactions)?;
                if referral.status == pb::ReferralStatus::NeedsRouting as i32 {
                    text.push_str(
                        "\nrouting: nothing routed this referral; it waits for your supervisors \
                         (`refnet triage list`, then `refnet handoff create`)\n",
                    );
                }
                Ok(text)
            })
        }
        ReferralCommand::Close { referral, reason } => {
            let desk = Desk::connect(args.connection).await?;
            triage::close(&desk, referral, reason).await
        }
        ReferralCommand::List {
            status,
            page,
            quiet,
        } => {
            let desk = Desk::connect(args.connection).await?;
            let reply = desk
                .intake()
                .list_referrals(pb::ListReferralsRequest {
                    statuses: status,
                    page_size: page.page_size,
                    page_token: page.page_token,
                    ..Default::default()
                })
                .await
                .answer()?;
            if quiet {
                return output::emit(&lines(reply.referrals.iter().map(|r| &r.reference_code)));
            }
            desk.show(&reply, |reply| {
                if reply.referrals.is_empty() {
                    return Ok(format!(
                        "no referrals\n{}",
                        footer(&reply.next_page_token, reply.redactions.len())
                    ));
                }
                let mut table = Table::new(&[
                    "REFERENCE",
                    "STATUS",
                    "URGENCY",
                    "CLASSIFICATION",
                    "COUNTY",
                    "CHILD",
                    "FILED BY",
                    "FILED AT",
                    "ID",
                ]);
                for r in &reply.referrals {
                    table.row(vec![
                        r.reference_code.clone(),
                        enum_name("refnet.v1.ReferralStatus", r.status),
                        enum_name("refnet.v1.Urgency", r.urgency),
                        enum_name("refnet.v1.Classification", r.classification),
                        r.county.clone(),
                        output::yes_no(r.subject_is_child).to_owned(),
                        r.filing_agency_id.clone(),
                        time(r.filed_at.as_ref()),
                        r.id.clone(),
                    ]);
                }
                Ok(table.render() + &footer(&reply.next_page_token, reply.redactions.len()))
            })
        }
    }
}

/// The human form of a FileReferral reply.
fn filed(reply: &pb::FileReferralResponse, key: &str) -> anyhow::Result<String> {
    let referral = reply.referral.clone().unwrap_or_default();
    let mut block = Block::default();
    block
        .kv(
            if reply.replayed {
                "already filed (a retry with the same key)"
            } else {
                "filed"
            },
            &referral.reference_code,
        )
        .kv("id", &referral.id)
        .kv(
            "status",
            enum_name("refnet.v1.ReferralStatus", referral.status),
        )
        .kv("version", referral.version.to_string())
        .kv("child", output::yes_no(referral.subject_is_child))
        .kv_some(
            "missing elements",
            enum_names("refnet.v1.TraffickingElement", &referral.missing_elements),
        )
        .kv_some(
            "possible duplicates",
            reply
                .possible_duplicates
                .iter()
                .map(|d| format!("{} ({})", d.reference_code, d.matched_on))
                .collect::<Vec<_>>()
                .join(", "),
        )
        .kv("idempotency key", key)
        .kv(
            "routing",
            format!(
                "the rules run now; `refnet timeline {code}` shows the handoffs. If no rule \
                 routes it, it waits for your supervisors (status NEEDS_ROUTING, `refnet triage list`)",
                code = referral.reference_code
            ),
        );
    let mut text = block.render();
    let withheld = output::withheld(&reply.redactions);
    if !withheld.is_empty() {
        text.push('\n');
        text.push_str(&withheld);
    }
    Ok(text)
}

/// `refnet inbox list|watch`.
pub async fn inbox(args: InboxArgs) -> anyhow::Result<()> {
    let desk = Desk::connect(args.connection).await?;
    match args.command {
        InboxCommand::List {
            states,
            page,
            quiet,
        } => {
            let reply = desk
                .routing()
                .list_inbox(pb::ListInboxRequest {
                    states,
                    page_size: page.page_size,
                    page_token: page.page_token,
                })
                .await
                .answer()?;
            if quiet {
                return output::emit(&lines(reply.handoffs.iter().map(|h| &h.id)));
            }
            desk.show(&reply, |reply| {
                if reply.handoffs.is_empty() {
                    return Ok(format!(
                        "the inbox is empty\n{}",
                        footer(&reply.next_page_token, reply.redactions.len())
                    ));
                }
                let mut table = Table::new(&[
                    "HANDOFF",
                    "REFERENCE",
                    "STATE",
                    "FROM",
                    "ACKNOWLEDGE BY",
                    "DECIDE BY",
                    "VERSION",
                    "PURPOSE",
                ]);
                for h in &reply.handoffs {
                    table.row(vec![
                        h.id.clone(),
                        h.reference_code.clone(),
                        enum_name("refnet.v1.HandoffState", h.state),
                        h.from_agency_id.clone(),
                        time(h.acknowledge_by.as_ref()),
                        time(h.decide_by.as_ref()),
                        h.version.to_string(),
                        h.purpose.clone(),
                    ]);
                }
                Ok(table.render() + &footer(&reply.next_page_token, reply.redactions.len()))
            })
        }
        InboxCommand::Watch {
            cursor,
            from_beginning,
            count,
        } => watch(&desk, cursor, from_beginning, count).await,
    }
}

const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Follows WatchInbox until Ctrl-C (or `count` items). A stream that ends
/// (the server shutting down answers UNAVAILABLE) is reopened after a short,
/// growing back-off, from the cursor of the last item printed, so nothing is
/// missed or repeated.
async fn watch(
    desk: &Desk,
    mut cursor: Option<String>,
    from_beginning: bool,
    count: Option<u64>,
) -> anyhow::Result<()> {
    let mut left = count;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut backoff = BACKOFF_FIRST;
    let mut resumed = false;
    loop {
        let request = pb::WatchInboxRequest {
            cursor: cursor.clone().unwrap_or_default(),
            // Nothing printed yet: a replay repeats nothing.
            from_beginning: from_beginning && cursor.is_none(),
        };
        let mut routing = desk.routing();
        let opened = tokio::select! {
            _ = &mut ctrl_c => return stopped(cursor.as_deref()),
            opened = routing.watch_inbox(request) => opened,
        };
        let interruption = match opened {
            Err(status) => status,
            Ok(response) => {
                note(&format!(
                    "{} the inbox at {} (Ctrl-C to stop)",
                    if resumed {
                        "resumed watching"
                    } else {
                        "watching"
                    },
                    desk.server
                ));
                let mut stream = response.into_inner();
                loop {
                    let next = tokio::select! {
                        _ = &mut ctrl_c => return stopped(cursor.as_deref()),
                        next = stream.message() => next,
                    };
                    match next {
                        Ok(Some(event)) => {
                            backoff = BACKOFF_FIRST;
                            if !event.cursor.is_empty() {
                                cursor = Some(event.cursor.clone());
                            }
                            print_inbox_event(desk, &event)?;
                            if let Some(n) = left.as_mut() {
                                *n -= 1;
                                if *n == 0 {
                                    return Ok(());
                                }
                            }
                        }
                        Ok(None) => break Status::unavailable("the server ended the stream"),
                        Err(status) => break status,
                    }
                }
            }
        };
        if interruption.code() != Code::Unavailable {
            bail!(output::status_text(&interruption));
        }
        note(&format!(
            "inbox stream interrupted ({}); reconnecting in {} ms, {}",
            output::status_text(&interruption),
            backoff.as_millis(),
            if cursor.is_some() {
                "resuming after the last item"
            } else {
                "from now"
            }
        ));
        tokio::select! {
            _ = &mut ctrl_c => return stopped(cursor.as_deref()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        resumed = true;
    }
}

/// Ctrl-C: says how to resume, and ends the watch successfully.
fn stopped(cursor: Option<&str>) -> anyhow::Result<()> {
    match cursor {
        Some(c) => note(&format!(
            "stopped; resume with: refnet inbox watch --cursor {c}"
        )),
        None => note("stopped"),
    }
    Ok(())
}

fn print_inbox_event(desk: &Desk, event: &pb::InboxEvent) -> anyhow::Result<()> {
    if desk.json {
        return output::emit(&format!(
            "{}\n",
            serde_json::to_string(&output::to_json(event)?)?
        ));
    }
    let h = event.handoff.clone().unwrap_or_default();
    output::emit(&format!(
        "{}  {:<22}  {:<15}  {:<12}  {}  {}\n",
        time(event.occurred_at.as_ref()),
        output::clean(&event.event),
        output::clean(&h.reference_code),
        enum_name("refnet.v1.HandoffState", h.state),
        output::clean(&h.id),
        output::clean(&h.purpose),
    ))
}

/// `refnet handoff show|ack|accept|decline|complete|withdraw|create|sent`.
pub async fn handoff(args: HandoffArgs) -> anyhow::Result<()> {
    let desk = Desk::connect(args.connection).await?;
    let (target, reason, transition) = match args.command {
        HandoffCommand::Show { id } => {
            let handoff = desk
                .routing()
                .get_handoff(pb::GetHandoffRequest { handoff_id: id })
                .await
                .answer()?;
            return desk.show(&handoff, |h| object_and_withheld(h, &h.redactions));
        }
        HandoffCommand::Ack(target) => (target, String::new(), Transition::Acknowledge),
        HandoffCommand::Accept(target) => (target, String::new(), Transition::Accept),
        HandoffCommand::Decline { target, reason } => (target, reason, Transition::Decline),
        HandoffCommand::Complete(target) => (target, String::new(), Transition::Complete),
        HandoffCommand::Withdraw { target, reason } => (target, reason, Transition::Withdraw),
        HandoffCommand::Create {
            referral,
            to_agency_id,
            purpose,
            idempotency_key,
        } => {
            let key = idempotency_key.unwrap_or_else(new_key);
            return triage::create(&desk, referral, to_agency_id, purpose, key).await;
        }
        HandoffCommand::Sent {
            states,
            page,
            quiet,
        } => return triage::sent(&desk, states, page, quiet).await,
    };
    let expected_version = match target.version {
        Some(v) => v,
        None => {
            desk.routing()
                .get_handoff(pb::GetHandoffRequest {
                    handoff_id: target.id.clone(),
                })
                .await
                .answer()?
                .version
        }
    };
    let request = pb::HandoffTransitionRequest {
        handoff_id: target.id,
        expected_version,
        reason,
    };
    let mut routing = desk.routing();
    let handoff = match transition {
        Transition::Acknowledge => routing.acknowledge_handoff(request).await,
        Transition::Accept => routing.accept_handoff(request).await,
        Transition::Decline => routing.decline_handoff(request).await,
        Transition::Complete => routing.complete_handoff(request).await,
        Transition::Withdraw => routing.withdraw_handoff(request).await,
    }
    .answer()?;
    desk.show(&handoff, |h| object_and_withheld(h, &h.redactions))
}

enum Transition {
    Acknowledge,
    Accept,
    Decline,
    Complete,
    Withdraw,
}

/// `refnet message post`.
pub async fn message(args: MessageArgs) -> anyhow::Result<()> {
    match args.command {
        MessageCommand::Post {
            referral,
            text,
            idempotency_key,
        } => {
            let body = text_or_stdin(&text)?;
            let desk = Desk::connect(args.connection).await?;
            let posted = desk
                .routing()
                .post_message(pb::PostMessageRequest {
                    referral_id: referral,
                    idempotency_key: idempotency_key.unwrap_or_else(new_key),
                    body,
                })
                .await
                .answer()?;
            desk.show(&posted, |m| object_and_withheld(m, &m.redactions))
        }
    }
}

/// Most pages `timeline` reads of either list (a runaway guard).
const MAX_PAGES: usize = 1000;

/// `refnet timeline REF`: every event on the referral and every message on
/// its thread, oldest first (messages in full where events only say one was posted).
pub async fn timeline(args: TimelineArgs) -> anyhow::Result<()> {
    let desk = Desk::connect(args.connection).await?;
    let mut routing = desk.routing();
    let mut events: Vec<pb::TimelineEvent> = Vec::new();
    let mut redactions: Vec<pb::Redaction> = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_PAGES {
        let page = routing
            .get_timeline(pb::GetTimelineRequest {
                referral: args.referral.clone(),
                page_size: 500,
                page_token,
            })
            .await
            .answer()?;
        redactions.extend(rebased(page.redactions, "events", events.len()));
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut messages: Vec<pb::ThreadMessage> = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_PAGES {
        let page = routing
            .list_messages(pb::ListMessagesRequest {
                referral: args.referral.clone(),
                page_size: 200,
                page_token,
            })
            .await
            .answer()?;
        redactions.extend(rebased(page.redactions, "messages", messages.len()));
        messages.extend(page.messages);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    // Items carry their own redactions too; list them with their place.
    for (i, e) in events.iter().enumerate() {
        redactions.extend(prefixed(&e.redactions, &format!("events[{i}]")));
    }
    for (i, m) in messages.iter().enumerate() {
        redactions.extend(prefixed(&m.redactions, &format!("messages[{i}]")));
    }
    if desk.json {
        let json = serde_json::json!({
            "events": events.iter().map(output::to_json).collect::<anyhow::Result<Vec<_>>>()?,
            "messages": messages.iter().map(output::to_json).collect::<anyhow::Result<Vec<_>>>()?,
            "redactions": redactions.iter().map(output::to_json).collect::<anyhow::Result<Vec<_>>>()?,
        });
        return output::print_json(&json);
    }
    let key = |t: Option<&prost_types::Timestamp>| t.map_or((0, 0), |t| (t.seconds, t.nanos));
    let mut rows: Vec<((i64, i32), Vec<String>)> = Vec::new();
    for e in events.iter().filter(|e| e.event != "MessagePosted") {
        rows.push((
            key(e.occurred_at.as_ref()),
            vec![
                time(e.occurred_at.as_ref()),
                e.event.clone(),
                if e.actor_agency_id.is_empty() {
                    "(routing)".to_owned()
                } else {
                    e.actor_agency_id.clone()
                },
                event_detail(e),
            ],
        ));
    }
    for m in &messages {
        rows.push((
            key(m.posted_at.as_ref()),
            vec![
                time(m.posted_at.as_ref()),
                "Message".to_owned(),
                m.author_agency_id.clone(),
                m.body.clone(),
            ],
        ));
    }
    rows.sort_by_key(|(k, _)| *k);
    let mut table = Table::new(&["WHEN", "EVENT", "BY", "DETAIL"]);
    for (_, row) in rows {
        table.row(row);
    }
    let mut text = table.render();
    let withheld = output::withheld(&redactions);
    if !withheld.is_empty() {
        text.push('\n');
        text.push_str(&withheld);
    }
    output::emit(&text)
}

/// What a timeline event says beyond its name.
fn event_detail(e: &pb::TimelineEvent) -> String {
    let mut parts = Vec::new();
    if !e.to_agency_id.is_empty() {
        parts.push(format!("to {}", e.to_agency_id));
    }
    if !e.rule_id.is_empty() {
        parts.push(format!("rule {}", e.rule_id));
    }
    if !e.handoff_id.is_empty() {
        parts.push(format!("handoff {}", e.handoff_id));
    }
    if e.version > 0 {
        parts.push(format!("version {}", e.version));
    }
    if !e.detail.is_empty() {
        parts.push(e.detail.clone());
    }
    if !e.reason.is_empty() {
        parts.push(format!("reason: {}", e.reason));
    }
    parts.join("; ")
}

/// Redactions of one page with their list index moved by `offset` (`events[3]`
/// of the second page of 500 becomes `events[503]`).
fn rebased(redactions: Vec<pb::Redaction>, list: &str, offset: usize) -> Vec<pb::Redaction> {
    redactions
        .into_iter()
        .map(|mut r| {
            if let Some(rest) = r.path.strip_prefix(&format!("{list}["))
                && let Some((n, tail)) = rest.split_once(']')
                && let Ok(n) = n.parse::<usize>()
            {
                r.path = format!("{list}[{}]{tail}", n + offset);
            }
            r
        })
        .collect()
}

fn prefixed(redactions: &[pb::Redaction], prefix: &str) -> Vec<pb::Redaction> {
    redactions
        .iter()
        .map(|r| pb::Redaction {
            path: format!("{prefix}.{}", r.path),
            ..r.clone()
        })
        .collect()
}

/// `refnet protection request|show|list`.
pub async fn protection(args: ProtectionArgs) -> anyhow::Result<()> {
    let desk = Desk::connect(args.connection).await?;
    match args.command {
        ProtectionCommand::Request {
            referral,
            grounds,
            threat_assessment,
            measures,
            urgency,
            threat_sources,
            idempotency_key,
        } => {
            let key = idempotency_key.unwrap_or_else(new_key);
            let request = desk
                .protection()
                .submit_protection_request(pb::SubmitProtectionRequestRequest {
                    referral_id: referral,
                    idempotency_key: key.clone(),
                    grounds,
                    threat_assessment,
                    measures,
                    urgency,
                    threat_sources,
                })
                .await
                .answer()?;
            if desk.json {
                note(&format!("idempotency key: {key}"));
            }
            desk.show(&request, |r| {
                Ok(format!(
                    "idempotency key: {key}\n\n{}",
                    object_and_withheld(r, &r.redactions)?
                ))
            })
        }
        ProtectionCommand::Show { id } => {
            let request = desk
                .protection()
                .get_protection_request(pb::GetProtectionRequestRequest { id })
                .await
                .answer()?;
            desk.show(&request, |r| object_and_withheld(r, &r.redactions))
        }
        ProtectionCommand::Watch {
            cursor,
            from_beginning,
            count,
        } => protection_watch::watch(&desk, cursor, from_beginning, count).await,
        ProtectionCommand::List {
            states,
            referral,
            page,
        } => {
            let reply = desk
                .protection()
                .list_protection_requests(pb::ListProtectionRequestsRequest {
                    states,
                    referral: referral.unwrap_or_default(),
                    page_size: page.page_size,
                    page_token: page.page_token,
                })
                .await
                .answer()?;
            desk.show(&reply, |reply| {
                if reply.requests.is_empty() {
                    return Ok(format!(
                        "no protection requests\n{}",
                        footer(&reply.next_page_token, reply.redactions.len())
                    ));
                }
                let mut table = Table::new(&[
                    "ID",
                    "REFERENCE",
                    "STATE",
                    "URGENCY",
                    "REQUESTER",
                    "SUBMITTED",
                    "VERSION",
                    "MEASURES REQUESTED",
                ]);
                for r in &reply.requests {
                    table.row(vec![
                        r.id.clone(),
                        r.reference_code.clone(),
                        enum_name("refnet.v1.ProtectionState", r.state),
                        enum_name("refnet.v1.Urgency", r.urgency),
                        r.requester_agency_id.clone(),
                        time(r.submitted_at.as_ref()),
                        r.version.to_string(),
                        enum_names("refnet.v1.ProtectionMeasure", &r.measures_requested),
                    ]);
                }
                Ok(table.render() + &footer(&reply.next_page_token, reply.redactions.len()))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let token = Token::from(" secret-token-value \n".to_owned());
        assert_eq!(token.0, "secret-token-value");
        assert!(!format!("{token:?}").contains("secret"));
    }

    #[test]
    fn page_redactions_are_rebased_and_item_redactions_prefixed() {
        let r = |path: &str| pb::Redaction {
            path: path.into(),
            ..Default::default()
        };
        let moved = rebased(vec![r("messages[3].body"), r("other")], "messages", 200);
        assert_eq!(moved[0].path, "messages[203].body");
        assert_eq!(moved[1].path, "other");
        assert_eq!(
            prefixed(&[r("reason")], "events[2]")[0].path,
            "events[2].reason"
        );
    }
}
