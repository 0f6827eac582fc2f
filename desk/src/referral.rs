//! `refnet referral file|show|list|close`: filing a referral from JSON, reading one as the agency may
//! see it, the agency's list.

use super::*;

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

fn referral_status(s: &str) -> Result<i32, String> {
    output::parse_enum("refnet.v1.ReferralStatus", s)
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
