//! kill -9 anywhere: the real binary is SIGKILLed at seeded moments spread over a run, re-run
//! to completion each time, and the archive compared with an uninterrupted run's.
//!
//! What each kill point proves (docs/RELIABILITY.md, "Crash-safe resume"):
//! - right after the kill, the checkpoints agree with the stored rows: inside each channel's
//!   fetched ranges (up to `last_message_id`, plus the time slices fetched ahead of it) the rows
//!   are exactly the uninterrupted run's, none lies outside them, `total_messages` counts them;
//! - the re-run exits 0 and leaves message rows (id, channel, content, raw_json) and checkpoints
//!   (last_message_id, total_messages, complete) identical to the uninterrupted run's, and no
//!   slice behind;
//! - the re-run asks again only for pages the killed run had not committed: only for channels
//!   in flight at the kill, and at most one page per span in flight (one per channel, or one per
//!   time slice for a long channel paged in slices).
//!
//! CI runs 24 kill points on the small preset, 8 on a long channel paged in slices, and a chain
//! of 6 kills on one archive. `RELIABILITY_LONG=1` runs 120 + 30 points and 6 chains of 15.

use crate::util::*;
use discord_archiver::simulator::{ChannelSpec, GuildSpec, LoggedRequest, SimConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Simulated network latency: long enough that kills land mid-request, short enough for CI.
const LATENCY: Duration = Duration::from_millis(8);

/// A channel this long is paged in up to four concurrent time slices (the fetcher splits a
/// channel of more than 80 pages into at most 4 spans); shorter ones in one span.
const SLICED_FROM_MESSAGES: usize = 8_000;
const MAX_SPANS: usize = 4;

fn long() -> bool {
    std::env::var_os("RELIABILITY_LONG").is_some_and(|v| v != "0")
}

/// A simulated guild, its ground truth, and an uninterrupted run's archive to compare with.
struct Setup {
    h: Harness,
    batch_size: usize,
    /// Message ids per readable channel, ascending.
    truth: BTreeMap<u64, Vec<u64>>,
    rows: BTreeMap<i64, Row>,
    /// (last_message_id, total_messages, complete) per channel.
    checkpoints: BTreeMap<i64, (i64, i64, bool)>,
    /// Requests of the uninterrupted run, and how many came before its first page (discovery).
    requests: u64,
    discovery: u64,
    /// Pages one span may have fetched but not committed at a kill (see `pages_in_flight`).
    per_span: usize,
}

/// Pages one span may have fetched but not yet committed. The fetcher awaits each commit before
/// its next page, but a batch that does not end with a page carries its last messages over into
/// the next page's batch: with a batch size that divides the page (1, 50, 100) that never
/// happens and one page is in flight at most; otherwise the carried-over part of the previous
/// page(s) is not durable either.
fn pages_in_flight(batch_size: usize) -> usize {
    const PAGE: usize = 100;
    if PAGE.is_multiple_of(batch_size) {
        1
    } else {
        batch_size.div_ceil(PAGE) + 1
    }
}

impl Setup {
    fn new(guild: GuildSpec, seed: u64, batch_size: usize) -> Setup {
        let h = Harness::new(SimConfig {
            seed,
            guild,
            latency: LATENCY,
            workers: 2,
            ..SimConfig::default()
        });
        let truth = h
            .readable_message_channels()
            .into_iter()
            .map(|c| (c, h.sim.state().truth(c).into_iter().map(|m| m.0).collect()))
            .collect();
        let mut setup = Setup {
            h,
            batch_size,
            truth,
            rows: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            requests: 0,
            discovery: 0,
            per_span: pages_in_flight(batch_size),
        };
        let db = setup.h.dir.path().join("uninterrupted.db");
        let client = setup.complete(&db, "uninterrupted run");
        let log = setup.h.requests_of(client);
        setup.requests = log.len() as u64;
        setup.discovery = log
            .iter()
            .position(|r| page_request(r).is_some())
            .unwrap_or(0) as u64;
        setup.rows = archived_at(&db);
        assert_same_rows(&setup.rows, &setup.h.expected(&BTreeSet::new()));
        setup.checkpoints = summary(&db);
        for (channel, ids) in &setup.truth {
            let last = ids.last().map_or(0, |id| *id as i64);
            let cp = setup.checkpoints[&(*channel as i64)];
            assert_eq!((cp.0, cp.2), (last, true), "channel {channel} complete");
        }
        setup
    }

    /// The archiver aimed at the simulator, writing to `db`.
    fn args(&self, db: &Path) -> Vec<String> {
        let mut args = self.h.archive_args();
        let at = args.iter().position(|a| a == "--db").unwrap();
        args[at + 1] = db.display().to_string();
        args.extend([
            "--rate".into(),
            "5000".into(),
            "--batch-size".into(),
            self.batch_size.to_string(),
        ]);
        args
    }

    /// Runs to the end and checks the archive is the uninterrupted run's. Returns the run's
    /// client number (its requests in the simulator's log).
    fn complete(&self, db: &Path, what: &str) -> u32 {
        let (token, client) = self.h.client_token();
        let out = TestCommand::new(&self.args(db))
            .env("DISCORD_TOKEN", &token)
            .archive(db)
            .run();
        out.assert_exit(0, what);
        if !self.rows.is_empty() {
            assert_same_rows(&archived_at(db), &self.rows);
            assert_eq!(
                summary(db),
                self.checkpoints,
                "{what}: checkpoints differ from the uninterrupted run's"
            );
        }
        assert!(slices_at(db).is_empty(), "{what}: every slice is folded");
        client
    }

    /// Starts a run with a token of its own, so that its requests are known in the log even
    /// when some arrive after it was killed.
    fn start(&self, db: &Path, log: &Path) -> Run {
        let (token, client) = self.h.client_token();
        let child = TestCommand::new(&self.args(db))
            .env("DISCORD_TOKEN", &token)
            .archive(db)
            .spawn(log);
        Run { child, client }
    }

    /// Waits until the run has made `requests` API requests (or ended), then `jitter` more, then
    /// SIGKILLs it. Returns whether it was still running.
    fn kill_after(&self, run: Run, requests: u64, jitter: Duration) -> bool {
        let Run { mut child, client } = run;
        let ours = |r: &LoggedRequest| r.client == Some(client);
        await_requests(&self.h, requests as usize, ours, || child.running());
        // Not synchronization: a seeded pause that spreads the kill moments over each request
        // (mid-request, mid-commit, in between), which request counts alone cannot.
        std::thread::sleep(jitter);
        let running = child.running();
        // SIGKILL. Requests the dead process had written may still be in the server's socket
        // buffers and be logged later: nothing waits for them, as each run's requests are told
        // apart by their client number, not by their place in the log.
        child.kill();
        running
    }

    /// The ids a page request `after=cursor&limit=n` is answered with.
    fn page(&self, channel: u64, after: u64, limit: usize) -> &[u64] {
        let ids = &self.truth[&channel];
        let from = ids.partition_point(|id| *id <= after);
        &ids[from..(from + limit).min(ids.len())]
    }

    /// Pages of the re-run that the killed run had already been sent (asked for), in part or in
    /// whole, per channel.
    fn refetched(&self, killed: &[LoggedRequest], rerun: &[LoggedRequest]) -> BTreeMap<u64, usize> {
        let limit = |q: &str| {
            q.split('&')
                .find_map(|p| p.strip_prefix("limit="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(50)
        };
        let mut received: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for r in killed {
            if let Some((channel, after)) = page_request(r) {
                if self.truth.contains_key(&channel) {
                    let page = self.page(channel, after, limit(&r.query));
                    received.entry(channel).or_default().extend(page);
                }
            }
        }
        let mut again: BTreeMap<u64, usize> = BTreeMap::new();
        for r in rerun {
            if let Some((channel, after)) = page_request(r) {
                let Some(first) = self
                    .truth
                    .get(&channel)
                    .and_then(|_| self.page(channel, after, limit(&r.query)).first().copied())
                else {
                    continue;
                };
                if received.get(&channel).is_some_and(|s| s.contains(&first)) {
                    *again.entry(channel).or_default() += 1;
                }
            }
        }
        again
    }

    /// One kill point on a fresh archive: run, kill, check, re-run, compare.
    fn kill_point(&self, name: &str, at: u64, jitter: Duration, figures: &mut Figures) {
        let db = self.h.dir.path().join(format!("{name}.db"));
        let what = format!(
            "{name} (batch {}, after {at} of {} requests + {jitter:?})",
            self.batch_size, self.requests
        );
        let run = self.start(&db, &db.with_extension("killed"));
        let killed = run.client;
        let running = self.kill_after(run, at, jitter);
        let after_kill = assert_checkpoints_cover_rows(&db, &self.rows, &what);
        let sliced = db.exists() && !slices_at(&db).is_empty();

        let rerun = self.complete(&db, &what);
        // Read after the re-run: the killed run's last requests are in by then, wherever they
        // landed in the log.
        let (killed, rerun) = (self.h.requests_of(killed), self.h.requests_of(rerun));
        let fetched: BTreeSet<u64> = killed
            .iter()
            .filter_map(page_request)
            .map(|(c, _)| c)
            .filter(|c| self.truth.contains_key(c))
            .collect();
        let in_flight: BTreeSet<u64> = fetched
            .into_iter()
            .filter(|c| !after_kill.get(&(*c as i64)).is_some_and(|cp| cp.complete))
            .collect();
        let again = self.refetched(&killed, &rerun);
        for (channel, n) in &again {
            let spans = if self.truth[channel].len() >= SLICED_FROM_MESSAGES {
                MAX_SPANS
            } else {
                1
            };
            let most = spans * self.per_span;
            assert!(
                *n <= most,
                "{what}: channel {channel} re-fetched {n} pages (at most {most}; checkpoints at the kill: {after_kill:?})"
            );
            assert!(
                in_flight.contains(channel),
                "{what}: channel {channel} was not in flight at the kill, yet {n} page(s) were fetched again"
            );
        }
        figures.kill_points += 1;
        figures.landed += usize::from(running);
        figures.mid_fetch += usize::from(!in_flight.is_empty());
        figures.with_slices += usize::from(sliced);
        figures.channels_in_flight += in_flight.len();
        figures.pages_refetched += again.values().sum::<usize>();
    }

    /// `points` kill points spread over the run: one in six during startup and discovery (the
    /// archive being created, channels listed), the rest evenly over the pages, each at a
    /// seeded spot inside its slice of the run, then a seeded pause of up to three latencies,
    /// so kills land mid-request, mid-commit and in between.
    fn kill_points(&self, points: usize, seed: u64, figures: &mut Figures) {
        let mut rng = SeededRng(seed);
        let early = points.div_ceil(6);
        let pages = self.requests - self.discovery;
        for i in 0..points {
            let at = if i < early {
                ((i as f64 + rng.unit()) / early as f64 * self.discovery as f64) as u64
            } else {
                let slice = (i - early) as f64 + rng.unit();
                self.discovery + (slice / (points - early) as f64 * pages as f64) as u64
            };
            let jitter = Duration::from_micros(rng.below(3 * LATENCY.as_micros() as u64));
            self.kill_point(&format!("kill-{i}"), at, jitter, figures);
        }
    }
}

/// The checkpoints as compared between runs: (last_message_id, total_messages, complete).
fn summary(db: &Path) -> BTreeMap<i64, (i64, i64, bool)> {
    checkpoints_at(db)
        .into_iter()
        .map(|(c, k)| (c, (k.last_message_id, k.total_messages, k.complete)))
        .collect()
}

struct Run {
    child: TestChild,
    /// Its requests in the simulator's log (`LoggedRequest::client`).
    client: u32,
}

/// Kill figures, summed over the kill points of a test.
#[derive(Debug, Default)]
struct Figures {
    kill_points: usize,
    /// The process was still running when SIGKILL was sent.
    landed: usize,
    /// Kills that found at least one channel in flight (fetched but not complete).
    mid_fetch: usize,
    /// Kills that left time slices in `fetch_slices`.
    with_slices: usize,
    channels_in_flight: usize,
    pages_refetched: usize,
}

#[test]
fn sigkill_at_seeded_moments_then_resume_gives_the_uninterrupted_archive() {
    let started = Instant::now();
    let (guild, points, batch_sizes): (GuildSpec, usize, &[usize]) = if long() {
        (GuildSpec::uniform(12, 1_500), 120, &[100, 37, 1])
    } else {
        (GuildSpec::test_small(), 24, &[100, 1])
    };
    let mut figures = Figures::default();
    for (k, &batch_size) in batch_sizes.iter().enumerate() {
        let setup = Setup::new(guild.clone(), 7, batch_size);
        let n = points / batch_sizes.len();
        setup.kill_points(n, 0x5EED_0001 + k as u64, &mut figures);
    }
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

/// The README's promise, "a crash at any moment re-fetches at most one page per channel", for a
/// batch size that does not divide Discord's page of 100.
#[test]
fn sigkill_with_a_batch_size_not_dividing_the_page_refetches_one_page_at_most() {
    let mut setup = Setup::new(GuildSpec::test_small(), 17, 37);
    setup.per_span = 1;
    let mut figures = Figures::default();
    setup.kill_points(12, 0x5EED_0004, &mut figures);
}

/// A long channel is paged in concurrent time slices recorded ahead of its checkpoint: kills
/// while slices are open must lose nothing, and the checkpoint must absorb every slice in the end.
#[test]
fn sigkill_while_a_long_channel_is_paged_in_slices_then_resume() {
    let started = Instant::now();
    let points = if long() { 30 } else { 8 };
    let guild = GuildSpec {
        channels: vec![
            ChannelSpec::text("long", 12_000),
            ChannelSpec::text("short", 250),
        ],
        ..GuildSpec::test_small()
    };
    let setup = Setup::new(guild, 13, 100);
    let mut figures = Figures::default();
    // Kills from a third of the run on: by then the long channel has been split.
    let mut rng = SeededRng(0x5EED_0003);
    let from = setup.discovery + (setup.requests - setup.discovery) / 3;
    for i in 0..points {
        let slice = (i as f64 + rng.unit()) / points as f64;
        let at = from + (slice * (setup.requests - from) as f64) as u64;
        let jitter = Duration::from_micros(rng.below(3 * LATENCY.as_micros() as u64));
        setup.kill_point(&format!("sliced-{i}"), at, jitter, &mut figures);
    }
    eprintln!(
        "kill -9 with slices: {figures:?} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        figures.with_slices * 2 >= points,
        "the kills must find slices in flight: {figures:?}"
    );
}

/// One archive, killed again and again as each resumed run gets going, then completed.
#[test]
fn repeated_kills_on_one_archive_lose_and_duplicate_nothing() {
    let chains: u64 = if long() { 6 } else { 1 };
    let kills_per_chain = if long() { 15 } else { 6 };
    let setup = Setup::new(GuildSpec::test_small(), 11, 100);
    let mut rng = SeededRng(0x5EED_0002);
    let mut landed = 0;
    for chain in 0..chains {
        let db = setup.h.dir.path().join(format!("chain-{chain}.db"));
        for k in 0..kills_per_chain {
            let what = format!("chain {chain}, kill {k}");
            let run = setup.start(&db, &db.with_extension(format!("k{k}")));
            let at = rng.below(setup.requests / 3 + 1);
            let jitter = Duration::from_micros(rng.below(2 * LATENCY.as_micros() as u64));
            let running = setup.kill_after(run, at, jitter);
            landed += usize::from(running);
            assert_checkpoints_cover_rows(&db, &setup.rows, &what);
        }
        setup.complete(&db, &format!("chain {chain}, final run"));
    }
    eprintln!(
        "chained kills: {} kills ({landed} on a running process) over {chains} archive(s)",
        chains * kills_per_chain
    );
}
