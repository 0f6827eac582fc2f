//! `refnet seed`: loads many synthetic referrals quickly, for the growth
//! benchmark (BENCHMARKS.md). The fixture referrals are cycled, each with
//! identifiers of its own, validated as FileReferral validates them, and
//! written in batches (one transaction and one multi-row insert per table per
//! batch) by their fixture's filing agency. Seeded referrals are closed
//! history: no event and no handoff (the routing worker has nothing to do).

use std::time::Instant;

use anyhow::{Context as _, bail};
use refnet_core::{
    AppContext,
    auth::{Principal, Role},
    domain::referral::ReferralContent,
    error::Violations,
};

use crate::fixtures::Fixture;

/// Seeds `count` referrals on `ctx`'s database, `batch` per transaction;
/// prints progress to standard error.
pub async fn run(
    ctx: &AppContext,
    fixtures: &[Fixture],
    count: u64,
    batch: u64,
) -> anyhow::Result<()> {
    if fixtures.is_empty() {
        bail!("no fixtures");
    }
    let batch = batch.max(1);
    let today = chrono::Utc::now().date_naive();
    // Seeded codes live in last year, apart from live filings' random codes.
    let year = chrono::Datelike::year(&today) - 1;
    let already = refnet_intake::seed::stored(ctx).await?;
    let started = Instant::now();
    let mut written = 0u64;
    while written < count {
        let size = batch.min(count - written);
        let mut items = Vec::with_capacity(usize::try_from(size)?);
        for k in 0..size {
            let n = already + written + k;
            let fixture = &fixtures[usize::try_from(n)? % fixtures.len()];
            items.push(item(ctx, fixture, n, today)?);
        }
        refnet_intake::seed::write_batch(ctx, items, year, already + written).await?;
        written += size;
        if written.is_multiple_of(batch * 50) || written == count {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "seeded {written}/{count} ({:.0} referrals/s)",
                written as f64 / secs.max(1e-9)
            );
        }
    }
    Ok(())
}

/// The `n`th seeded referral: `fixture` with identifiers numbered from `n`.
fn item(
    ctx: &AppContext,
    fixture: &Fixture,
    n: u64,
    today: chrono::NaiveDate,
) -> anyhow::Result<(Principal, ReferralContent)> {
    let agency_id = fixture.filer().context("a fixture without a demo filer")?;
    let agency = ctx.agencies().get(agency_id).with_context(|| {
        format!("agency {agency_id} is not registered (demo agencies expected)")
    })?;
    let mut draft = fixture.draft();
    crate::fixtures::number_identifiers(&mut draft, crate::fixtures::SEED_NUMBERS + n);
    let mut v = Violations::new();
    let Some(content) = ReferralContent::from_draft(&mut v, "draft", Some(&draft), today) else {
        bail!("fixture {} does not validate: {v:?}", fixture.fixture_id);
    };
    let principal = Principal {
        officer_id: format!("seed-officer-{}", n % 97),
        agency_id: agency.id.clone(),
        agency_kind: agency.kind,
        roles: [Role::Officer].into_iter().collect(),
    };
    Ok((principal, content))
}
