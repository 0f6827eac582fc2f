//! `refnet inbox list|watch`: the handoffs addressed to the agency, listed (which records their delivery)
//! or followed live, resuming from the cursor after the server goes away.

use super::*;

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
