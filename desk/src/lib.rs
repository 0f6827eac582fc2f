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

mod call;
mod handoff;
mod health;
mod inbox;
mod output;
mod protection;
mod protection_watch;
mod referral;
mod thread;
mod triage;
pub mod web;

pub use call::{CallArgs, call};
pub use handoff::{HandoffArgs, handoff};
pub use health::{HealthArgs, health};
pub use inbox::{InboxArgs, inbox};
pub use protection::{ProtectionArgs, protection};
pub use referral::{ReferralArgs, referral};
pub use thread::{MessageArgs, TimelineArgs, message, timeline};
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
    /// The refnet server: `https://HOST:PORT` (TLS, verified against the system's roots or --ca) or
    /// `http://` (plaintext, for a server on this machine).
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
    /// CA certificate(s) (PEM) to verify an https:// server with, instead of the system's roots.
    #[arg(long, global = true, env = "REFNET_CA", value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for a server that requires mutual TLS (with --client-key).
    #[arg(long, global = true, env = "REFNET_CLIENT_CERT", value_name = "FILE")]
    client_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "REFNET_CLIENT_KEY", value_name = "FILE")]
    client_key: Option<std::path::PathBuf>,
    /// Verify the server's certificate for this name instead of the URL's host
    /// (a probe calling https://localhost on a server certified for its public name).
    #[arg(long, global = true, value_name = "NAME")]
    tls_server_name: Option<String>,
}

/// The TLS settings of an https:// server: its CA (or the system's roots) and
/// the client certificate for mutual TLS.
fn client_tls(connection: &Connection) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
    };
    let mut tls = tonic::transport::ClientTlsConfig::new();
    tls = match &connection.ca {
        Some(ca) => tls.ca_certificate(tonic::transport::Certificate::from_pem(read(
            "CA certificate",
            ca,
        )?)),
        None => tls.with_native_roots(),
    };
    match (&connection.client_cert, &connection.client_key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read("client certificate", cert)?,
                read("client key", key)?,
            ));
        }
        (None, None) => {}
        _ => bail!("mutual TLS needs both --client-cert and --client-key"),
    }
    if let Some(name) = &connection.tls_server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(tls)
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

fn handoff_state(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.HandoffState", s)
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

/// A channel to `connection.server` over TLS (https://) or plaintext
/// (http://), and the server's URL as used.
async fn open_channel(connection: &Connection) -> anyhow::Result<(Channel, String)> {
    let server = if connection.server.contains("://") {
        connection.server.clone()
    } else {
        format!("http://{}", connection.server)
    };
    let mut endpoint = Endpoint::from_shared(server.clone())
        .with_context(|| format!("{server} is not a server URL"))?
        .connect_timeout(Duration::from_secs(10));
    if server.starts_with("https://") {
        endpoint = endpoint
            .tls_config(client_tls(connection)?)
            .with_context(|| format!("TLS settings for {server}"))?;
    } else if !server.starts_with("http://") {
        bail!("{server}: the server URL must start with https:// or http://");
    } else if connection.ca.is_some() || connection.client_cert.is_some() {
        bail!("{server}: --ca and --client-cert apply to https:// servers only");
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach refnet at {server}"))?;
    Ok((channel, server))
}

/// A connection to the server with the officer's token.
struct Desk {
    channel: Channel,
    bearer: Bearer,
    server: String,
    json: bool,
}

impl Desk {
    async fn connect(connection: Connection) -> anyhow::Result<Self> {
        let Some(token) = connection.token.clone().filter(|t| !t.0.is_empty()) else {
            bail!(
                "no token: pass --token TOKEN or set REFNET_TOKEN (a development server's tokens come \
                 from `refnet token --data-dir DIR --agency ID --role officer`)"
            );
        };
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.0).parse().map_err(|_| {
            anyhow!("the token is not a valid header value: it must be printable ASCII without line breaks")
        })?;
        value.set_sensitive(true);
        let (channel, server) = open_channel(&connection).await?;
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

/// The contents of the file at `path`, or standard input when it is `-`.
fn file_or_stdin(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        return text_or_stdin("-");
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
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
        let moved = thread::rebased(vec![r("messages[3].body"), r("other")], "messages", 200);
        assert_eq!(moved[0].path, "messages[203].body");
        assert_eq!(moved[1].path, "other");
        assert_eq!(
            thread::prefixed(&[r("reason")], "events[2]")[0].path,
            "events[2].reason"
        );
    }
}
