//! `refnet protection watch`: the WPA's live queue of protection requests
//! (a requester: its own), printed as they are made, change state or are
//! escalated past a deadline.

use refnet_api::v1 as pb;

use super::{Answer as _, Desk, enum_name, note, output, time};

/// Follows WatchProtectionRequests until Ctrl-C, `count` items, or the
/// stream ends (then it says how to resume from the last cursor printed).
pub(crate) async fn watch(
    desk: &Desk,
    cursor: Option<String>,
    from_beginning: bool,
    count: Option<u64>,
) -> anyhow::Result<()> {
    let mut stream = desk
        .protection()
        .watch_protection_requests(pb::WatchProtectionRequestsRequest {
            cursor: cursor.clone().unwrap_or_default(),
            from_beginning: from_beginning && cursor.is_none(),
        })
        .await
        .answer()?;
    note(&format!(
        "watching protection requests at {} (Ctrl-C to stop)",
        desk.server
    ));
    let mut last = cursor;
    let mut left = count;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next = tokio::select! {
            _ = &mut ctrl_c => break,
            next = stream.message() => next,
        };
        match next {
            Ok(Some(item)) => {
                last = Some(item.cursor.clone());
                print(desk, &item)?;
                if let Some(n) = left.as_mut() {
                    *n -= 1;
                    if *n == 0 {
                        return Ok(());
                    }
                }
            }
            Ok(None) => break,
            Err(status) => {
                if let Some(c) = &last {
                    note(&format!(
                        "resume with: refnet protection watch --cursor {c}"
                    ));
                }
                anyhow::bail!(output::status_text(&status));
            }
        }
    }
    if let Some(c) = &last {
        note(&format!(
            "stopped; resume with: refnet protection watch --cursor {c}"
        ));
    }
    Ok(())
}

fn print(desk: &Desk, item: &pb::ProtectionRequestEvent) -> anyhow::Result<()> {
    if desk.json {
        return output::emit(&format!(
            "{}\n",
            serde_json::to_string(&output::to_json(item)?)?
        ));
    }
    let r = item.request.clone().unwrap_or_default();
    output::emit(&format!(
        "{}  {:<22}  {:<15}  {:<17}  {:<8}  {}  {}\n",
        time(item.occurred_at.as_ref()),
        output::clean(&item.event),
        output::clean(&r.reference_code),
        enum_name("refnet.v1.ProtectionState", r.state),
        enum_name("refnet.v1.Urgency", r.urgency),
        output::clean(&r.id),
        output::clean(&item.detail),
    ))
}
