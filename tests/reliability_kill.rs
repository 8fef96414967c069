//! kill -9 anywhere: the real binary is SIGKILLed at seeded moments spread over a run, re-run
//! to completion each time, and the archive compared with an uninterrupted run's.
//!
//! What each kill point proves (docs/RELIABILITY.md, "Crash-safe resume"):
//! - right after the kill, every checkpoint agrees with the stored rows: the rows of a channel
//!   up to its `last_message_id` are exactly the uninterrupted run's, none lies beyond it, and
//!   `total_messages` counts them;
//! - the re-run exits 0 and leaves message rows (id, channel, content, raw_json) and checkpoints
//!   (last_message_id, total_messages, complete) identical to the uninterrupted run's;
//! - the re-run asks again only for pages the killed run had not committed: at most one per
//!   channel, and only for channels that were in flight at the kill.
//!
//! CI runs 24 kill points on the small preset; `RELIABILITY_LONG=1` runs 120 on a bigger guild,
//! plus chains of kills on one archive (a resumed run killed again, and again).

mod util;

use discord_archiver::simulator::{GuildSpec, SimConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};
use util::*;

/// Simulated network latency: long enough that kills land mid-request, short enough for CI.
const LATENCY: Duration = Duration::from_millis(8);

fn long() -> bool {
    std::env::var_os("RELIABILITY_LONG").is_some_and(|v| v != "0")
}

/// The archiver aimed at the harness's simulator, writing to `db`.
fn args(h: &Harness, db: &Path, batch_size: usize) -> Vec<String> {
    let mut args = h.archive_args();
    let at = args.iter().position(|a| a == "--db").unwrap();
    args[at + 1] = db.display().to_string();
    args.extend([
        "--rate".into(),
        "5000".into(),
        "--batch-size".into(),
        batch_size.to_string(),
    ]);
    args
}

fn run_to_completion(h: &Harness, db: &Path, batch_size: usize, what: &str) {
    let args = args(h, db, batch_size);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.bin(&args);
    assert_exit(&out, 0, what);
}

/// Kill figures, summed over all kill points of a test.
#[derive(Debug, Default)]
struct Figures {
    kill_points: usize,
    /// The process was still running when SIGKILL was sent.
    landed: usize,
    /// Kills that found at least one channel in flight (fetched but not complete).
    mid_fetch: usize,
    channels_in_flight: usize,
    pages_refetched: usize,
}

struct Run {
    child: Child,
    log_start: usize,
}

fn start(h: &Harness, db: &Path, batch_size: usize, log: &Path) -> Run {
    let log_start = h.sim.state().request_log().len();
    let env = [("DISCORD_TOKEN", TOKEN)];
    let child = spawn_bin(&args(h, db, batch_size), &env, log);
    Run { child, log_start }
}

/// Waits until the run has made `requests` API requests (or ended), then `jitter` more, then
/// SIGKILLs it. Returns whether it was still running, and where its requests end in the log.
fn kill_after(h: &Harness, mut run: Run, requests: u64, jitter: Duration) -> (bool, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let base = run.log_start as u64;
    while h.sim.state().stats().requests_total < base + requests {
        if run.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    std::thread::sleep(jitter);
    let running = run.child.try_wait().unwrap().is_none();
    run.child.kill().unwrap(); // SIGKILL
    run.child.wait().unwrap();
    // Requests the dead process had already written may still be in the server's socket
    // buffers: let them arrive before the log is cut.
    std::thread::sleep(LATENCY * 4 + Duration::from_millis(40));
    (running, h.sim.state().request_log().len())
}

/// Pages of the re-run (log `[from..]`) that the killed run (log `[start..from)`) had already
/// asked for, per channel: requests whose `after` cursor is not past the killed run's last.
fn refetched(h: &Harness, start: usize, from: usize) -> BTreeMap<u64, usize> {
    let log = h.sim.state().request_log();
    let readable: BTreeSet<u64> = h.readable_message_channels().into_iter().collect();
    let mut furthest: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &log[start..from] {
        if let Some((channel, after)) = page_request(r) {
            let f = furthest.entry(channel).or_default();
            *f = (*f).max(after);
        }
    }
    let mut again: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &log[from..] {
        if let Some((channel, after)) = page_request(r) {
            if readable.contains(&channel) && furthest.get(&channel).is_some_and(|f| after <= *f) {
                *again.entry(channel).or_default() += 1;
            }
        }
    }
    again
}

/// One kill point on a fresh archive: run, kill, check, re-run, compare.
#[allow(clippy::too_many_arguments)]
fn kill_point(
    h: &Harness,
    db: &Path,
    batch_size: usize,
    requests: u64,
    jitter: Duration,
    baseline: &BTreeMap<i64, Row>,
    baseline_checkpoints: &BTreeMap<i64, Checkpoint>,
    figures: &mut Figures,
    what: &str,
) {
    let run = start(h, db, batch_size, &db.with_extension("killed"));
    let start_at = run.log_start;
    let (running, cut) = kill_after(h, run, requests, jitter);
    let after_kill = assert_checkpoints_cover_rows(db, baseline, what);
    let fetched: BTreeSet<u64> = h.sim.state().request_log()[start_at..cut]
        .iter()
        .filter_map(page_request)
        .map(|(c, _)| c)
        .collect();
    let readable: BTreeSet<u64> = h.readable_message_channels().into_iter().collect();
    let in_flight: BTreeSet<u64> = fetched
        .intersection(&readable)
        .copied()
        .filter(|c| !after_kill.get(&(*c as i64)).is_some_and(|cp| cp.complete))
        .collect();

    run_to_completion(h, db, batch_size, what);
    let again = refetched(h, start_at, cut);
    for (channel, n) in &again {
        assert!(
            *n <= 1,
            "{what}: channel {channel} re-fetched {n} pages (checkpoints at the kill: {after_kill:?})"
        );
        assert!(
            in_flight.contains(channel),
            "{what}: channel {channel} was not in flight at the kill but {n} page(s) were fetched again"
        );
    }
    assert_same_rows(&archived_at(db), baseline);
    let got: BTreeMap<i64, (i64, i64, bool)> = checkpoints_at(db)
        .into_iter()
        .map(|(c, k)| (c, (k.last_message_id, k.total_messages, k.complete)))
        .collect();
    let want: BTreeMap<i64, (i64, i64, bool)> = baseline_checkpoints
        .iter()
        .map(|(c, k)| (*c, (k.last_message_id, k.total_messages, k.complete)))
        .collect();
    assert_eq!(
        got, want,
        "{what}: checkpoints differ from the uninterrupted run's"
    );

    figures.kill_points += 1;
    figures.landed += usize::from(running);
    figures.mid_fetch += usize::from(!in_flight.is_empty());
    figures.channels_in_flight += in_flight.len();
    figures.pages_refetched += again.values().sum::<usize>();
}

/// The uninterrupted run: its archive, checkpoints, request count, and how many of its requests
/// came before the first page (discovery).
fn baseline(
    h: &Harness,
    batch_size: usize,
) -> (BTreeMap<i64, Row>, BTreeMap<i64, Checkpoint>, u64, u64) {
    let db = h.dir.path().join(format!("uninterrupted-{batch_size}.db"));
    let start = h.sim.state().request_log().len();
    run_to_completion(h, &db, batch_size, "uninterrupted run");
    let log = h.sim.state().request_log();
    let requests = (log.len() - start) as u64;
    let discovery = log[start..]
        .iter()
        .position(|r| page_request(r).is_some())
        .unwrap_or(0) as u64;
    let rows = archived_at(&db);
    assert_same_rows(&rows, &h.expected(&BTreeSet::new()));
    let checkpoints = checkpoints_at(&db);
    for channel in h.readable_message_channels() {
        let last = h
            .sim
            .state()
            .truth(channel)
            .last()
            .map_or(0, |m| m.0 as i64);
        let cp = &checkpoints[&(channel as i64)];
        assert_eq!((cp.last_message_id, cp.complete), (last, true));
    }
    (rows, checkpoints, requests, discovery)
}

fn harness(guild: GuildSpec, seed: u64) -> Harness {
    Harness::new(SimConfig {
        seed,
        guild,
        latency: LATENCY,
        workers: 2,
        ..SimConfig::default()
    })
}

fn kill_points(h: &Harness, points: usize, seed: u64, batch_sizes: &[usize]) -> Figures {
    let mut figures = Figures::default();
    let mut rng = SeededRng(seed);
    for &batch_size in batch_sizes {
        let (rows, checkpoints, requests, discovery) = baseline(h, batch_size);
        let per_batch = points / batch_sizes.len();
        // One kill in six during startup and discovery (the archive being created, channels
        // listed), the rest spread evenly over the pages: each at a seeded spot inside its
        // slice, then a seeded pause of up to three latencies, so kills land mid-request,
        // mid-commit and in between.
        let early = per_batch.div_ceil(6);
        for i in 0..per_batch {
            let at = if i < early {
                ((i as f64 + rng.unit()) / early as f64 * discovery as f64) as u64
            } else {
                let slice = (i - early) as f64 + rng.unit();
                discovery
                    + (slice / (per_batch - early) as f64 * (requests - discovery) as f64) as u64
            };
            let jitter = Duration::from_micros(rng.below(3 * LATENCY.as_micros() as u64));
            let db: PathBuf = h.dir.path().join(format!("kill-b{batch_size}-{i}.db"));
            let what = format!(
                "kill point {i} (batch {batch_size}, after {at} of {requests} requests + {jitter:?})"
            );
            kill_point(
                h,
                &db,
                batch_size,
                at,
                jitter,
                &rows,
                &checkpoints,
                &mut figures,
                &what,
            );
        }
    }
    figures
}

#[test]
fn sigkill_at_seeded_moments_then_resume_gives_the_uninterrupted_archive() {
    let started = Instant::now();
    let (guild, points, batch_sizes): (GuildSpec, usize, &[usize]) = if long() {
        (GuildSpec::uniform(12, 1_500), 120, &[100, 37, 1])
    } else {
        (GuildSpec::test_small(), 24, &[100, 1])
    };
    let h = harness(guild, 7);
    let figures = kill_points(&h, points, 0x5EED_0001, batch_sizes);
    eprintln!(
        "kill -9: {figures:?} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(figures.kill_points, points);
    // The moments must really be spread over the run, not all before or after it.
    assert!(
        figures.landed * 10 >= points * 9,
        "most kills must hit a running process: {figures:?}"
    );
    assert!(
        figures.mid_fetch * 2 >= points,
        "at least half of the kills must land mid-fetch: {figures:?}"
    );
}

/// One archive, killed again and again as each resumed run gets going, then completed.
#[test]
fn repeated_kills_on_one_archive_lose_and_duplicate_nothing() {
    let chains: u64 = if long() { 6 } else { 1 };
    let kills_per_chain = if long() { 15 } else { 6 };
    let h = harness(GuildSpec::test_small(), 11);
    let (rows, checkpoints, requests, _) = baseline(&h, 100);
    let mut rng = SeededRng(0x5EED_0002);
    let mut landed = 0;
    for chain in 0..chains {
        let db = h.dir.path().join(format!("chain-{chain}.db"));
        for k in 0..kills_per_chain {
            let what = format!("chain {chain}, kill {k}");
            let run = start(&h, &db, 100, &db.with_extension(format!("k{k}")));
            let at = rng.below(requests / 3 + 1);
            let jitter = Duration::from_micros(rng.below(2 * LATENCY.as_micros() as u64));
            let (running, _) = kill_after(&h, run, at, jitter);
            landed += usize::from(running);
            assert_checkpoints_cover_rows(&db, &rows, &what);
        }
        run_to_completion(&h, &db, 100, &format!("chain {chain}, final run"));
        assert_same_rows(&archived_at(&db), &rows);
        let got: BTreeMap<i64, (i64, i64, bool)> = checkpoints_at(&db)
            .into_iter()
            .map(|(c, k)| (c, (k.last_message_id, k.total_messages, k.complete)))
            .collect();
        let want: BTreeMap<i64, (i64, i64, bool)> = checkpoints
            .iter()
            .map(|(c, k)| (*c, (k.last_message_id, k.total_messages, k.complete)))
            .collect();
        assert_eq!(got, want, "chain {chain}");
    }
    eprintln!(
        "chained kills: {} kills ({landed} on a running process) over {chains} archive(s)",
        chains * kills_per_chain
    );
}
