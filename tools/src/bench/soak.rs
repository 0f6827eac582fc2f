//! `soak`: a steady mix of calls at a set rate for the whole duration,
//! reported in windows (errors, latency drift, memory growth).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{BenchArgs, Phase, Scenario, World, drive::Client, server::Server};

/// The soak's mix, in turn: one filing (routed by the worker), three reads,
/// a referral page and an inbox page.
const SOAK_MIX: [Scenario; 6] = [
    Scenario::File,
    Scenario::Get,
    Scenario::Get,
    Scenario::Get,
    Scenario::List,
    Scenario::Inbox,
];

/// The RPCs of [`SOAK_MIX`], each reported on its own too.
const SOAK_RPCS: [Scenario; 4] = [
    Scenario::File,
    Scenario::Get,
    Scenario::List,
    Scenario::Inbox,
];

/// Windows a soak is reported in.
const SOAK_WINDOWS: usize = 10;

/// `soak`: [`SOAK_MIX`] at `--rate` calls/s from up to 32 paced clients for
/// `--duration`; per window: achieved rate, errors, p50/p99, server RSS; then
/// errors, memory growth and p99 drift from the second window (the first warms
/// up) to the last.
pub(super) async fn soak(world: &Arc<World>, server: &Server, args: &BenchArgs) {
    let duration: Duration = args.duration.into();
    let window = duration / SOAK_WINDOWS as u32;
    let workers = args.concurrency.clamp(1, 32);
    let period = Duration::from_secs_f64(workers as f64 / f64::from(args.rate.max(1)));
    let started = Instant::now();
    let end = started + duration;
    // Per window: all calls, then each RPC of the mix (file, get, list, inbox).
    let stats: Arc<std::sync::Mutex<Vec<[Phase; 5]>>> = Arc::new(std::sync::Mutex::new(
        (0..SOAK_WINDOWS).map(|_| Default::default()).collect(),
    ));
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (world, stats) = (world.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(&world.channel);
            let (mut list_token, mut inbox_token) = (String::new(), String::new());
            let mut next = started + period.mul_f64(worker as f64 / workers as f64);
            let mut i = worker;
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                next += period;
                let scenario = SOAK_MIX[i % SOAK_MIX.len()];
                let page_token = if scenario == Scenario::Inbox {
                    &mut inbox_token
                } else {
                    &mut list_token
                };
                let t = Instant::now();
                let result = client.call(&world, Some(scenario), i, page_token).await;
                let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                let w = ((t - started).as_nanos() / window.as_nanos().max(1)) as usize;
                let rpc = 1 + SOAK_RPCS.iter().position(|s| *s == scenario).unwrap_or(0);
                if let Ok(mut stats) = stats.lock() {
                    let window = &mut stats[w.min(SOAK_WINDOWS - 1)];
                    for k in [0, rpc] {
                        let phase = &mut window[k];
                        match &result {
                            Ok(()) => {
                                phase.ok += 1;
                                phase.micros.push(micros);
                            }
                            Err(e) => {
                                phase.errors += 1;
                                phase.first_error.get_or_insert(e.clone());
                            }
                        }
                    }
                }
                i += workers;
            }
        }));
    }
    let mut rss = Vec::new();
    for w in 1..=SOAK_WINDOWS {
        tokio::time::sleep_until((started + window * w as u32).into()).await;
        rss.push(server.rss_mib().0);
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut stats = match Arc::try_unwrap(stats).map(|m| m.into_inner()) {
        Ok(Ok(stats)) => stats,
        _ => {
            println!("soak: the workers' figures could not be collected");
            return;
        }
    };
    println!(
        "soak: {} calls/s target ({} clients), {} windows of {}",
        args.rate,
        workers,
        SOAK_WINDOWS,
        humantime::format_duration(window)
    );
    println!(
        "{:<8} {:>6} {:>9} {:>7} {:>20} {:>9}",
        "soak", "window", "calls/s", "errors", "p50/p99/p999 ms", "RSS MiB"
    );
    let mut p99 = Vec::new();
    let mut errors = 0;
    for (w, phases) in stats.iter_mut().enumerate() {
        let phase = &mut phases[0];
        phase.elapsed = window;
        errors += phase.errors;
        p99.push(phase.percentile(99.0));
        let (rate, latencies) = (phase.rate(), phase.latencies());
        println!(
            "{:<8} {:>6} {:>9.1} {:>7} {:>20} {:>9.1}",
            "soak",
            w + 1,
            rate,
            phase.errors,
            latencies,
            rss[w]
        );
        if let Some(e) = &phase.first_error {
            println!("         first error: {e}");
        }
    }
    let calls: u64 = stats.iter().map(|w| w[0].ok + w[0].errors).sum();
    let (first, last) = (1.min(SOAK_WINDOWS - 1), SOAK_WINDOWS - 1);
    for (k, rpc) in SOAK_RPCS.iter().enumerate() {
        let (a, b) = (
            stats[first][k + 1].percentile(99.0),
            stats[last][k + 1].percentile(99.0),
        );
        let (a50, b50) = (
            stats[first][k + 1].percentile(50.0),
            stats[last][k + 1].percentile(50.0),
        );
        println!(
            "soak rpc {:<6} p50 {a50:.2} -> {b50:.2} ms, p99 {a:.2} -> {b:.2} ms (drift x{:.2}), window {} to {}",
            format!("{rpc:?}").to_lowercase(),
            b / a,
            first + 1,
            last + 1
        );
    }
    println!(
        "soak: {calls} calls, {errors} errors; RSS {:.1} -> {:.1} MiB (growth {:+.1} MiB); p99 {:.2} -> {:.2} ms (drift x{:.2}), window {} to {}",
        rss[first],
        rss[last],
        rss[last] - rss[first],
        p99[first],
        p99[last],
        p99[last] / p99[first],
        first + 1,
        last + 1
    );
    println!(
        "summary scenario=soak calls={calls} errors={errors} rss_growth_mib={:.1} p99_drift={:.3}\n",
        rss[last] - rss[first],
        p99[last] / p99[first]
    );
}
