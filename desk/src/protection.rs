//! `refnet protection request|show|list|watch`: witness protection from the desk.

use super::*;

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

fn protection_state(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.ProtectionState", s)
}

fn measure(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.ProtectionMeasure", s)
}

fn urgency(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.Urgency", s)
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
