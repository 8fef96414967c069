//! Nothing lost, nobody let in: network and API faults, storage faults, bad input and the
//! token's secrecy, end to end against the simulator (kill -9 is in `reliability_kill.rs`).
//!
//! docs/RELIABILITY.md maps each guarantee to the tests here.

use crate::util::*;
use diesel::connection::SimpleConnection;
use diesel::RunQueryDsl;
use discord_archiver::app::{self, RunError, RunOptions};
use discord_archiver::config::{self, Settings, Token};
use discord_archiver::discord::page::parse_messages;
use discord_archiver::discord::RateLimitHeaders;
use discord_archiver::simulator::{self, FaultSpec, GuildSpec, SimConfig};
use discord_archiver::stats::RunReport;
use discord_archiver::storage;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Runs in-process with a chosen request timeout (the harness's is 20 s).
fn run_with_timeout(settings: Settings, timeout: Duration) -> Result<RunReport, RunError> {
    let options = RunOptions {
        request_timeout: timeout,
        ..RunOptions::default()
    };
    actix::System::new().block_on(app::archive(settings, Token::new(TOKEN), options))
}

fn with_faults(faults: FaultSpec, seed: u64) -> Harness {
    Harness::new(SimConfig {
        seed,
        guild: GuildSpec::test_small(),
        faults,
        ..SimConfig::default()
    })
}

/// Requests of any route (discovery's too) that failed: what the totals count as errors.
fn failed_requests(h: &Harness) -> u64 {
    h.sim
        .state()
        .request_log()
        .iter()
        .filter(|r| r.fault.is_some() || !(200..300).contains(&r.status))
        .count() as u64
}

/// Page requests (`GET /channels/{id}/messages`) that met an injected fault, by fault name.
fn page_faults(h: &Harness) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in h.sim.state().request_log() {
        if let (Some(_), Some(fault)) = (page_request(&r), &r.fault) {
            *out.entry(fault.clone()).or_default() += 1;
        }
    }
    out
}

/// Names the files that appeared, vanished or changed between two snapshots.
fn assert_unchanged(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .map(|n| {
            let len = |m: &BTreeMap<String, Vec<u8>>| m.get(n).map(Vec::len);
            format!("{n} ({:?} -> {:?} bytes)", len(before), len(after))
        })
        .collect();
    assert!(changed.is_empty(), "{what} changed files: {changed:?}");
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The bytes of every file in a directory, by name: what "left unchanged" compares.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = if entry.path().is_file() {
            std::fs::read(entry.path()).unwrap()
        } else {
            b"<dir>".to_vec()
        };
        out.insert(name, bytes);
    }
    out
}

/// A shell script run in a private mount namespace (`unshare`), so that it may mount a small
/// tmpfs without touching the machine's mounts. `None` when this machine does not allow it.
fn in_mount_namespace(script: &str, env: &[(&str, &str)]) -> Option<TestOutput> {
    let probe = std::process::Command::new("unshare")
        .args(["-Urm", "sh", "-c"])
        .arg("d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs \"$d\" && umount \"$d\"; r=$?; rmdir \"$d\"; exit $r")
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("note: cannot mount a tmpfs in a user namespace here; skipping the tmpfs part");
        return None;
    }
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-Urm", "sh", "-c", script])
        .env("BIN", bin_path())
        .env_remove("DISCORD_TOKEN")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("unshare runs");
    Some(TestOutput::of(
        out,
        &format!("unshare -Urm sh -c {}", shell_quote(script)),
        None,
    ))
}

// ---------------------------------------------------------------------------------------------
// 2. Network and API faults
// ---------------------------------------------------------------------------------------------

/// One fault kind at a time, seeded in the simulator: the archive is exact, every failed attempt
/// is counted, nobody panicked or gave up (no restart), exit code 0.
#[test]
fn each_network_and_api_fault_is_retried_and_the_archive_stays_exact() {
    let p = 0.15;
    let cases: Vec<(&str, FaultSpec)> = vec![
        (
            "http_500",
            FaultSpec {
                http_500: p,
                ..FaultSpec::default()
            },
        ),
        (
            "html_502",
            FaultSpec {
                html_502: p,
                ..FaultSpec::default()
            },
        ),
        (
            "http_503",
            FaultSpec {
                http_503: p,
                ..FaultSpec::default()
            },
        ),
        (
            "rate_limit_429",
            FaultSpec {
                rate_limit_429: p,
                retry_after: 0.03,
                ..FaultSpec::default()
            },
        ),
        (
            "global_429",
            FaultSpec {
                global_429: p,
                retry_after: 0.03,
                ..FaultSpec::default()
            },
        ),
        (
            "truncated_body",
            FaultSpec {
                truncated_body: p,
                ..FaultSpec::default()
            },
        ),
        (
            "malformed_json",
            FaultSpec {
                malformed_json: p,
                ..FaultSpec::default()
            },
        ),
    ];
    let mut figures = Vec::new();
    for (seed, (name, faults)) in cases.into_iter().enumerate() {
        let h = with_faults(faults, 100 + seed as u64);
        let report = h.run(h.settings(), RunOptions::default());
        assert_eq!(report.exit_code, 0, "{name}: {report:#?}");
        assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
        let injected = h.sim.state().stats().faults_injected;
        let on_pages = page_faults(&h);
        let n = on_pages.get(name).copied().unwrap_or(0);
        assert!(n >= 1, "{name}: the fault fired on pages ({injected:?})");
        let t = &report.totals;
        // Every failed attempt (discovery's too) is an error in the statistics; 429s also count.
        assert_eq!(
            t.errors,
            failed_requests(&h),
            "{name}: errors counted ({on_pages:?})"
        );
        if name.contains("429") {
            let all = h
                .sim
                .state()
                .request_log()
                .iter()
                .filter(|r| r.fault.as_deref() == Some(name))
                .count() as u64;
            assert_eq!(t.rate_limit_errors, all, "{name}: 429s counted");
        } else {
            assert_eq!(t.rate_limit_errors, 0, "{name}");
        }
        assert_eq!(t.restarts, 0, "{name}: no fetcher gave up or panicked");
        figures.push((name, injected.values().sum::<u64>()));
    }
    eprintln!("faults injected per kind (all routes): {figures:?}");
}

/// All the kinds at once, through the real binary: exit 0, the archive exact, retries in
/// `--stats-json`, no panic in the output.
#[test]
fn a_storm_of_mixed_faults_through_the_binary_exits_0_with_the_exact_archive() {
    let h = with_faults(
        FaultSpec {
            http_500: 0.04,
            html_502: 0.04,
            http_503: 0.04,
            rate_limit_429: 0.04,
            global_429: 0.02,
            truncated_body: 0.04,
            malformed_json: 0.04,
            retry_after: 0.05,
            ..FaultSpec::default()
        },
        200,
    );
    let config = h.dir.path().join("fast-retries.toml");
    std::fs::write(
        &config,
        "[rate_limit]\nbackoff_cap_seconds = 0.02\nmax_retries = 8\n",
    )
    .unwrap();
    let stats = h.dir.path().join("stats.json");
    let mut args = h.archive_args();
    args.extend([
        "--config".into(),
        config.display().to_string(),
        "--rate".into(),
        "5000".into(),
        "--stats-json".into(),
        stats.display().to_string(),
    ]);
    let out = h.bin(&strs(&args));
    out.assert_exit(0, "mixed faults");
    out.assert_never_says("panicked");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let on_pages: u64 = page_faults(&h).values().sum();
    assert!(on_pages >= 5, "{:?}", h.sim.state().stats().faults_injected);
    assert_eq!(
        json["totals"]["errors"].as_u64(),
        Some(failed_requests(&h)),
        "{json}"
    );
    assert!(json["totals"]["rate_limit_errors"].as_u64().unwrap() > 0);
    eprintln!(
        "mixed faults: {:?}, {on_pages} on pages",
        h.sim.state().stats().faults_injected
    );
}

/// A 429 whose `retry_after` is far longer than `backoff_cap_seconds` is obeyed in full: the
/// channel's next request comes no earlier, so a rate-limited route is never hammered.
#[test]
fn a_429_longer_than_the_backoff_cap_is_obeyed_not_hammered() {
    let retry_after = 1.2;
    let h = with_faults(
        FaultSpec {
            rate_limit_429: 0.08,
            retry_after,
            ..FaultSpec::default()
        },
        300,
    );
    let settings = h.settings();
    assert!(settings.rate.backoff_cap < Duration::from_millis(100));
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
    let log = h.sim.state().request_log();
    let mut checked = 0;
    for (i, r) in log.iter().enumerate() {
        let Some((channel, after)) = page_request(r) else {
            continue;
        };
        if r.status != 429 {
            continue;
        }
        let next = log[i + 1..]
            .iter()
            .find(|n| page_request(n).is_some_and(|(c, _)| c == channel))
            .expect("the rate-limited page is asked for again");
        let waited = next.elapsed_ms - r.elapsed_ms;
        assert!(
            waited as f64 >= retry_after * 1000.0 - 30.0,
            "channel {channel}: retried after {waited} ms, retry_after was {retry_after} s"
        );
        assert_eq!(
            page_request(next),
            Some((channel, after)),
            "the same page again"
        );
        checked += 1;
    }
    assert!(checked >= 2, "the fault fired on pages");
    // The totals count discovery's 429s as well.
    let all = log.iter().filter(|r| r.status == 429).count() as u64;
    assert_eq!(report.totals.rate_limit_errors, all);
    eprintln!("429s longer than the backoff cap: {checked}, each waited out");
}

/// 429s of scope `shared` (the resource's limit, met through others' use of it) are waited out,
/// but they are not invalid requests (Discord does not count them toward its ban), so the run's
/// invalid-request count stays at what 401/403/429-of-our-own responses it met.
#[test]
fn shared_429s_are_waited_out_and_not_counted_as_invalid_requests() {
    let h = with_faults(
        FaultSpec {
            shared_429: 0.1,
            retry_after: 0.05,
            ..FaultSpec::default()
        },
        301,
    );
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
    let log = h.sim.state().request_log();
    let shared = log
        .iter()
        .filter(|r| r.fault.as_deref() == Some("shared_429"))
        .count() as u64;
    let invalid = log
        .iter()
        .filter(|r| r.fault.is_none() && matches!(r.status, 401 | 403 | 429))
        .count() as u64;
    assert!(shared >= 3, "the fault fired: {shared}");
    let limiter = report.rate_limiter.expect("the limiter's figures");
    assert_eq!(limiter.rate_limited, shared, "{limiter:?}");
    assert_eq!(limiter.invalid_responses, invalid, "{limiter:?}");
    eprintln!("shared 429s: {shared}, waited out, none counted as invalid");
}

/// Responses slower than the request timeout are abandoned and retried; the archive is exact.
#[test]
fn responses_slower_than_the_request_timeout_are_retried() {
    let h = with_faults(
        FaultSpec {
            slow: 0.1,
            slow_delay: Duration::from_millis(3_000),
            ..FaultSpec::default()
        },
        400,
    );
    let report = run_with_timeout(h.settings(), Duration::from_millis(1_000)).expect("run starts");
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
    let slow = page_faults(&h).get("slow").copied().unwrap_or(0);
    assert!(slow >= 2, "the fault fired");
    assert_eq!(
        report.totals.errors,
        failed_requests(&h),
        "every timeout is a counted error"
    );
    assert_eq!(report.totals.restarts, 0);
    eprintln!("slow responses: {slow} timed out and were retried");
}

/// Drives a run into a server that, once every channel has fetched its first page, answers
/// nothing but 429s (tiny `retry_after`, retries unbounded); returns the report and how many
/// 429s were served.
fn run_into_429s(h: &Harness, channels: usize) -> (RunReport, u64) {
    let mut settings = h.settings();
    settings.rate.max_retries = u32::MAX;
    let report = std::thread::scope(|scope| {
        let run = scope.spawn(|| run_with_timeout(settings, Duration::from_secs(20)));
        let page = |r: &simulator::LoggedRequest| page_request(r).is_some();
        await_requests(h, channels, page, || !run.is_finished());
        h.sim.state().set_faults(FaultSpec {
            rate_limit_429: 1.0,
            retry_after: 0.001,
            ..FaultSpec::default()
        });
        run.join().unwrap().expect("the run starts")
    });
    let served = h.sim.state().stats().faults_injected;
    (report, served.get("rate_limit_429").copied().unwrap_or(0))
}

/// Discord bans an IP after 10,000 invalid responses in 10 minutes; the run stops itself first.
const DISCORD_INVALID_LIMIT: u64 = 10_000;

/// The invalid-request budget: against a server answering only 429s, the run stops itself near
/// half of Discord's ban threshold: exit 1, a message that says why, the committed checkpoints
/// consistent. Discord counts per IP over 10 minutes, not per run: a run right after it refuses
/// to start, saying when it may, without a request; once that time has passed (the last run's
/// end moved back 10 minutes here), the next run completes.
#[test]
fn the_invalid_request_budget_stops_a_run_before_half_of_discords_limit() {
    let started = Instant::now();
    let h = Harness::new(SimConfig {
        seed: 800,
        guild: GuildSpec::uniform(40, 300),
        workers: 2,
        ..SimConfig::default()
    });
    let expected = h.expected(&BTreeSet::new());
    let (report, served_429) = run_into_429s(&h, 40);
    assert_eq!(report.exit_code, 1, "{:?}", report.stopped);
    let why = report.stopped.clone().unwrap_or_default();
    assert!(why.contains("invalid-request limit"), "{why}");
    // Past a quarter of the limit it only slowed down; it stops at half, give or take the
    // requests already in flight (which the limiter counts as if they were invalid).
    assert!(
        (DISCORD_INVALID_LIMIT / 4..DISCORD_INVALID_LIMIT / 2 + 40).contains(&served_429),
        "stopped after {served_429} invalid responses"
    );
    assert_checkpoints_cover_rows(&h.db, &expected, "budget exhausted");
    h.sim.state().set_faults(FaultSpec::default());
    let requests = h.sim.state().request_log().len();
    let refused = h.try_run(h.settings(), RunOptions::default());
    let Err(RunError::InvalidBudget(why)) = &refused else {
        panic!("a run right after must not start: {refused:?}");
    };
    assert!(why.contains("run again after"), "{why}");
    assert_eq!(refused.as_ref().unwrap_err().exit_code(), 1);
    assert_eq!(h.sim.state().request_log().len(), requests, "no request");
    h.conn()
        .batch_execute(
            "UPDATE runs SET ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', ended_at, '-601 seconds')",
        )
        .unwrap();
    let again = h.run(h.settings(), RunOptions::default());
    assert_eq!(again.exit_code, 0);
    assert_same_rows(&h.archived(), &expected);
    eprintln!(
        "invalid-request budget: stopped after {served_429} 429s in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A run whose discovery fails still records the invalid responses it met: the next run's
/// budget counts them (Discord's limit is per IP over 10 minutes, not per run).
#[test]
fn a_failed_discovery_records_its_invalid_responses_for_the_next_run() {
    let h = Harness::small();
    assert_eq!(h.run(h.settings(), RunOptions::default()).exit_code, 0);
    let guild = h.settings().guilds[0].id;
    h.sim.state().set_faults(FaultSpec {
        refuse_paths: vec![format!("/guilds/{guild}/channels")],
        ..FaultSpec::default()
    });
    let failed = h.try_run(h.settings(), RunOptions::default());
    assert!(
        matches!(failed, Err(RunError::Usage(_) | RunError::Discovery(_))),
        "discovery fails: {failed:?}"
    );
    let refused = h
        .sim
        .state()
        .request_log()
        .iter()
        .filter(|r| r.status == 403)
        .count() as i64;
    assert!(refused >= 1);
    #[derive(diesel::QueryableByName)]
    struct Invalid {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let last: Invalid = diesel::sql_query(
        "SELECT json_extract(stats_json, '$.rate_limiter.invalid_responses') AS n \
         FROM runs ORDER BY id DESC LIMIT 1",
    )
    .get_result(&mut h.conn())
    .unwrap();
    assert_eq!(last.n, refused);
}

/// Strictly before half: the budget must count the requests already in flight, or with many
/// channels at once the responses still on their way push it past 5,000.
#[test]
fn the_invalid_request_budget_counts_requests_in_flight() {
    let h = Harness::new(SimConfig {
        seed: 801,
        guild: GuildSpec::uniform(64, 150),
        workers: 2,
        ..SimConfig::default()
    });
    let (report, served_429) = run_into_429s(&h, 64);
    assert_eq!(report.exit_code, 1, "{:?}", report.stopped);
    assert!(
        served_429 < DISCORD_INVALID_LIMIT / 2,
        "stopped after {served_429} invalid responses: not before half of Discord's limit"
    );
}

/// A TCP proxy in front of the simulator that resets (RST) two connections of every three, up to
/// `max_resets`, after a seeded number of response bytes: mid-response, or before any. (Every
/// third one is spared, so that no request meets more resets in a row than it has retries.)
struct ResetProxy {
    addr: SocketAddr,
    resets: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

fn reset_proxy(upstream: SocketAddr, max_resets: usize, seed: u64) -> ResetProxy {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let resets = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (counter, accepted) = (resets.clone(), connections.clone());
    // tokio's `net` and `io-util` features come with actix; the thread lives as long as the test.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let mut rng = SeededRng(seed);
            while let Ok((client, _)) = listener.accept().await {
                let n = accepted.fetch_add(1, Ordering::SeqCst);
                let reset_after =
                    (n % 3 != 0 && n < max_resets * 3 / 2).then(|| rng.below(100_000) as usize);
                tokio::spawn(relay(client, upstream, reset_after, counter.clone()));
            }
        });
    });
    ResetProxy {
        addr,
        resets,
        connections,
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    upstream: SocketAddr,
    reset_after: Option<usize>,
    resets: Arc<AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    if reset_after.is_some() {
        // Closing with a zero linger sends RST instead of FIN: "connection reset by peer"
        // (and does not block, whatever the deprecation note fears for a non-zero linger).
        #[allow(deprecated)]
        let _ = client.set_linger(Some(Duration::ZERO));
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::io::copy(&mut client_read, &mut server_write);
    let down = async {
        let mut sent = 0usize;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            if let Some(limit) = reset_after {
                if sent + n > limit {
                    let _ = client_write.write_all(&buf[..limit - sent]).await;
                    return true;
                }
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return false;
            }
            sent += n;
        }
    };
    let reset = tokio::select! {
        _ = up => false,
        reset = down => reset,
    };
    if reset {
        resets.fetch_add(1, Ordering::SeqCst);
    }
    // Dropping both halves closes the client socket (with RST when lingering 0).
    drop(client_read);
    drop(client_write);
}

/// Connections reset mid-response (or before it) are retried on a new connection.
#[test]
fn connection_resets_are_retried_and_the_archive_stays_exact() {
    let h = Harness::small();
    let proxy = reset_proxy(h.sim.addr(), 12, 500);
    let mut settings = h.settings();
    settings.api_base = Some(config::ApiBase {
        host_port: proxy.addr.to_string(),
        use_http: true,
    });
    settings.rate.max_retries = 8;
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
    let resets = proxy.resets.load(Ordering::SeqCst);
    let connections = proxy.connections.load(Ordering::SeqCst);
    assert!(
        resets >= 3,
        "the proxy reset connections ({resets} of {connections})"
    );
    assert!(report.totals.errors >= 1, "resets are counted as errors");
    assert_eq!(report.totals.restarts, 0);
    eprintln!(
        "connection resets: {resets} of {connections} connections, errors counted: {}",
        report.totals.errors
    );
}

/// A channel whose every request fails exhausts its retries and restarts, is reported failed
/// (exit 1), and costs the others nothing; its checkpoint claims nothing.
#[test]
fn a_channel_failing_for_good_exits_1_and_the_rest_is_exact() {
    let h = Harness::small();
    let broken = h.channel_id("two-fifty");
    h.sim.state().set_faults(FaultSpec {
        fail_first: vec![(broken, 10_000)],
        ..FaultSpec::default()
    });
    let config = h.dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[rate_limit]\nbackoff_cap_seconds = 0.02\nmax_retries = 2\n[fetch]\nmax_restarts = 2\n",
    )
    .unwrap();
    let mut args = h.archive_args();
    args.extend(["--config".into(), config.display().to_string()]);
    let out = h.bin(&strs(&args));
    out.assert_exit(1, "a channel failed for good");
    out.assert_says("two-fifty");
    let expected: BTreeMap<i64, Row> = h
        .expected(&BTreeSet::new())
        .into_iter()
        .filter(|(_, r)| r.channel_id != broken as i64)
        .collect();
    assert_same_rows(&h.archived(), &expected);
    assert!(h
        .checkpoints()
        .get(&(broken as i64))
        .is_none_or(|cp| cp.last_message_id == 0 && cp.total_messages == 0));
    // (1 try + 2 retries) × (1 start + 2 restarts), and not one request more.
    let tries = h
        .sim
        .state()
        .request_log()
        .iter()
        .filter(|r| page_request(r).is_some_and(|(c, _)| c == broken))
        .count();
    assert_eq!(tries, 9, "bounded retries");
}

/// The token revoked mid-run: the run stops at once with exit 1 (exit 2 is for errors found
/// before fetching, when nothing was done), 401s are not retried, what was
/// committed is consistent, and a later run with a valid token completes the same archive.
#[test]
fn a_token_revoked_mid_run_stops_at_once_with_exit_1_and_loses_nothing() {
    let config = SimConfig {
        seed: 600,
        guild: GuildSpec::test_small(),
        latency: Duration::from_millis(10),
        workers: 2,
        ..SimConfig::default()
    };
    let h = Harness::new(config.clone());
    let expected = h.expected(&BTreeSet::new());
    let mut args = h.archive_args();
    args.extend(["--rate".into(), "5000".into()]);
    let mut child = h.command(&args).spawn(&h.dir.path().join("revoked"));
    let served_page = |r: &simulator::LoggedRequest| page_request(r).is_some() && r.status == 200;
    assert!(
        await_requests(&h, 12, served_page, || child.running()),
        "the run ended before 12 pages"
    );
    h.sim.state().revoke_token();
    let revoked_at = Instant::now();
    let out = child.wait(Duration::from_secs(30));
    let stopped_in = revoked_at.elapsed();
    out.assert_exit(1, "exit 1 on a 401 mid-run");
    out.assert_says("401");
    assert!(
        stopped_in < Duration::from_secs(5),
        "stops at once: {stopped_in:?}"
    );
    // No 401 is retried: at most the requests already in flight met one.
    let unauthorized = h.sim.state().stats().unauthorized;
    assert!(
        unauthorized as usize <= h.readable_message_channels().len(),
        "{unauthorized} requests got 401"
    );
    let cps = assert_checkpoints_cover_rows(&h.db, &expected, "after the 401");
    assert!(
        !h.archived().is_empty() && !cps.is_empty(),
        "something was committed"
    );

    // The same guild behind a fresh simulator (same seed, same ids) with a working token.
    let fresh = Harness::new(config);
    let mut args = fresh.archive_args();
    let at = args.iter().position(|a| a == "--db").unwrap();
    args[at + 1] = h.db.display().to_string();
    let out = fresh.bin(&strs(&args));
    out.assert_exit(0, "the run after a new token");
    assert_same_rows(&h.archived(), &expected);
    eprintln!("401 mid-run: stopped in {stopped_in:?}, {unauthorized} requests got 401");
}

// ---------------------------------------------------------------------------------------------
// 3. Storage faults
// ---------------------------------------------------------------------------------------------

/// Disk full (a 3 MiB tmpfs) mid-run: a clear error, checkpoints consistent with the stored rows;
/// after the tmpfs grows, a re-run completes the exact archive. A tmpfs too small even for the
/// schema: refused before fetching, exit 2.
#[test]
fn disk_full_is_a_clear_error_and_a_rerun_after_freeing_space_completes() {
    let h = Harness::small();
    let expected = h.expected(&BTreeSet::new());
    let out_dir = h.dir.path().join("snapshots");
    for sub in ["full", "freed", "tiny", "mnt"] {
        std::fs::create_dir_all(out_dir.join(sub)).unwrap();
    }
    let guild = h.sim.state().guild_id().to_string();
    let url = h.sim.url();
    let env = [
        ("OUT", out_dir.to_str().unwrap()),
        ("API", url.as_str()),
        ("GUILD", guild.as_str()),
        ("DISCORD_TOKEN", TOKEN),
    ];
    let prelude = r#"
        set -u
        M="$OUT/mnt"
        run() { "$BIN" archive --db "$M/a.db" --api-base "$API" --guild "$GUILD" --progress log > "$OUT/$1.out" 2> "$OUT/$1.err"; echo $? > "$OUT/$1.rc"; }
        snap() { for f in "$M"/a.db "$M"/a.db-wal; do [ -e "$f" ] && cp "$f" "$OUT/$1/"; done; true; }
    "#;
    let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap();
    let rc = |name: &str| read(&format!("{name}.rc")).trim().parse::<i32>().unwrap();

    // Too small for even the schema: a database error before fetching.
    let tiny = format!(
        "{prelude}\nmount -t tmpfs -o size=16k tmpfs \"$M\" || exit 97\nrun tiny\numount \"$M\"\n"
    );
    let Some(out) = in_mount_namespace(&tiny, &env) else {
        return;
    };
    assert!(out.output.status.success(), "script failed:\n{out}");
    let tiny = read("tiny.err");
    assert_eq!(rc("tiny"), 2, "{tiny}");
    assert!(tiny.contains("full"), "names the cause: {tiny}");
    assert!(
        h.requests().is_empty(),
        "not one request before the database works"
    );

    // Full mid-run (4 MiB: a new archive takes about 1 MiB in 64 KiB pages, and its WAL as
    // much again until the first checkpoint), then the same tmpfs grown
    // to 64 MiB and the run repeated.
    let full = format!(
        "{prelude}
        mount -t tmpfs -o size=4096k tmpfs \"$M\" || exit 97
        run full; snap full
        mount -o remount,size=64m \"$M\" || exit 98
        run freed; snap freed
        umount \"$M\"
        "
    );
    let out = in_mount_namespace(&full, &env).expect("worked a moment ago");
    assert!(out.output.status.success(), "script failed:\n{out}");
    let full = read("full.err") + &read("full.out");
    assert_eq!(rc("full"), 1, "{full}");
    assert!(
        full.contains("database or disk is full"),
        "a clear error: {full}"
    );
    assert!(!full.contains("panicked"), "{full}");
    let snapshot = out_dir.join("full").join("a.db");
    let cps = assert_checkpoints_cover_rows(&snapshot, &expected, "disk full");
    let stored = archived_at(&snapshot).len();
    assert!(
        stored > 0 && stored < expected.len(),
        "stopped part-way: {stored}"
    );
    assert!(!cps.is_empty());

    // Space freed: the re-run completes exactly.
    let freed = read("freed.err");
    assert_eq!(rc("freed"), 0, "{freed}");
    let finished = out_dir.join("freed").join("a.db");
    assert_same_rows(&archived_at(&finished), &expected);
    assert!(checkpoints_at(&finished).values().all(|c| c.complete));
}

/// The same without a tmpfs: the archiver's file-size limit (RLIMIT_FSIZE) makes SQLite's writes
/// fail part-way ("disk I/O error"). Works on any Unix machine, root or not. The run stops at the
/// first failed batch (no fetcher is restarted into a disk that cannot be written), keeps what
/// was committed, and a re-run without the limit completes.
#[test]
fn a_write_limit_mid_run_stops_the_run_cleanly_and_the_rerun_completes() {
    let h = Harness::small();
    let expected = h.expected(&BTreeSet::new());
    let stats = h.dir.path().join("stats.json");
    let mut args = h.archive_args();
    args.extend(["--stats-json".into(), stats.display().to_string()]);
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    // SIGXFSZ ignored, so an oversized write fails with EFBIG instead of killing the process.
    // (`ulimit -f` counts 512-byte blocks in POSIX sh: 4 MiB a file, room for the schema in
    // 64 KiB pages, its WAL until the first checkpoint and a first batch of a hundred messages,
    // and less than the whole archive's 5 MB.)
    let script = format!(
        "trap '' XFSZ; ulimit -f 8192; exec \"$BIN\" {}",
        quoted.join(" ")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("BIN", bin_path())
        .env("DISCORD_TOKEN", TOKEN)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let out = TestOutput::of(out, &format!("sh -c {}", shell_quote(&script)), Some(&h.db));
    let t = out.text();
    out.assert_exit(1, "a failed run");
    assert!(
        t.contains("storage failed") && t.contains("disk I/O error") && t.contains("disk full"),
        "names the cause and what to do: {t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(
        json["totals"]["restarts"].as_u64(),
        Some(0),
        "no fetcher is restarted into a disk that cannot be written: {t}"
    );
    let cps = assert_checkpoints_cover_rows(&h.db, &expected, "write limit");
    assert!(!cps.is_empty() && h.archived().len() < expected.len());
    let out = h.bin(&strs(&h.archive_args()));
    out.assert_exit(0, "re-run without the limit");
    assert_same_rows(&h.archived(), &expected);
}

/// Two archivers on one database: the second refuses at once with a clear message (and makes no
/// request); the first finishes the exact archive; `status` may read meanwhile.
#[test]
fn a_second_archiver_on_the_same_database_is_refused() {
    let h = Harness::new(SimConfig {
        guild: GuildSpec::test_small(),
        latency: Duration::from_millis(15),
        workers: 2,
        ..SimConfig::default()
    });
    let mut args = h.archive_args();
    args.extend(["--rate".into(), "5000".into()]);
    let mut first = h.command(&args).spawn(&h.dir.path().join("first"));
    let page = |r: &simulator::LoggedRequest| page_request(r).is_some();
    assert!(
        await_requests(&h, 4, page, || first.running()),
        "the first archiver ended before 4 pages"
    );
    // The second has a token of its own: its requests, if any, are known whenever they land.
    let (token, second_client) = h.client_token();
    let second = TestCommand::new(&args)
        .env("DISCORD_TOKEN", &token)
        .archive(&h.db)
        .run();
    let status = h.bin(&["status", "--db", h.db.to_str().unwrap()]);
    let still_running = first.running();
    second.assert_exit(2, "second archiver");
    second.assert_says("another discord-archiver is writing to this archive");
    assert!(still_running, "the check ran while the first was writing");
    // The first archiver's own requests go on; the second made none.
    assert_eq!(
        h.requests_of(second_client),
        [],
        "the refused archiver made no request"
    );
    status.assert_exit(0, "status while archiving");
    first
        .wait(Duration::from_secs(120))
        .assert_exit(0, "the first archiver");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
}

/// Files that are not our archive are refused by every command, with a clear message, exit 2,
/// no request, and left byte for byte as they were (no `-wal`/`-shm` left behind either).
#[test]
fn files_that_are_not_our_archive_are_refused_and_left_unchanged() {
    let h = Harness::small();
    // (what, what the refusal says, how to make the file)
    type Maker = Box<dyn Fn(&Path)>;
    let make: Vec<(&str, &str, Maker)> = vec![
        (
            "text",
            "not a SQLite database",
            Box::new(|p| std::fs::write(p, "just some notes\n").unwrap()),
        ),
        (
            "garbage after the magic",
            "unreadable as SQLite",
            Box::new(|p| {
                let mut bytes = b"SQLite format 3\0".to_vec();
                let mut rng = SeededRng(9);
                bytes.extend((0..8192).map(|_| rng.next_u64() as u8));
                std::fs::write(p, bytes).unwrap();
            }),
        ),
        (
            "foreign SQLite",
            "not a discord-archiver archive",
            Box::new(|p| {
                let mut c = conn_at(p);
                c.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ann');")
                    .unwrap();
            }),
        ),
        (
            "foreign SQLite in WAL mode",
            "not a discord-archiver archive",
            Box::new(|p| {
                let mut c = conn_at(p);
                c.batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');")
                    .unwrap();
            }),
        ),
        (
            "another application's archive_meta",
            "another application",
            Box::new(|p| {
                let mut c = conn_at(p);
                c.batch_execute("CREATE TABLE archive_meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO archive_meta VALUES ('application', 'someone-else');")
                    .unwrap();
            }),
        ),
        (
            "newer schema (WAL, as we write it)",
            "newer discord-archiver",
            Box::new(|p| {
                let mut archive = storage::open_rw(p).unwrap();
                archive
                    .conn
                    .batch_execute(
                        "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000');",
                    )
                    .unwrap();
            }),
        ),
        (
            "a directory",
            "not a regular file",
            Box::new(|p| std::fs::create_dir(p).unwrap()),
        ),
    ];
    let mut tried = 0;
    for (i, (what, needle, create)) in make.iter().enumerate() {
        let dir = h.dir.path().join(format!("case-{i}"));
        std::fs::create_dir(&dir).unwrap();
        let db = dir.join("archive.db");
        create(&db);
        let before = snapshot(&dir);
        let db_arg = db.display().to_string();
        let mut archive = h.archive_args();
        let at = archive.iter().position(|a| a == "--db").unwrap();
        archive[at + 1] = db_arg.clone();
        let commands: Vec<Vec<String>> = vec![
            archive,
            vec!["status".into(), "--db".into(), db_arg.clone()],
            vec![
                "export".into(),
                "--db".into(),
                db_arg.clone(),
                "--out".into(),
                h.dir.path().join("x.jsonl").display().to_string(),
            ],
        ];
        for command in &commands {
            let out = h.bin(&strs(command));
            out.assert_exit(2, &format!("{what}: {}", command[0]));
            assert!(
                out.text().contains(needle),
                "{what}: {} says {needle:?}: {}",
                command[0],
                out.text()
            );
            assert_unchanged(&before, &snapshot(&dir), &format!("{what}: {}", command[0]));
            tried += 1;
        }
    }
    assert!(h.requests().is_empty(), "no request for a refused archive");
    eprintln!("refused files: {} kinds × 3 commands = {tried}", make.len());
}

/// Paths the archive cannot be written to: a clear error naming the path, exit 2, no request.
#[test]
fn an_unwritable_archive_path_is_a_clear_error() {
    let h = Harness::small();
    let missing_dir = h.dir.path().join("no-such-dir").join("a.db");
    let mut cases: Vec<(PathBuf, &str)> = vec![(missing_dir, "cannot create the archive")];
    #[cfg(unix)]
    {
        // A read-only directory (root ignores permissions, so only when it bites).
        use std::os::unix::fs::PermissionsExt;
        let ro = h.dir.path().join("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"").is_err() {
            cases.push((ro.join("a.db"), "cannot create the archive"));
        }
    }
    for (db, needle) in &cases {
        let mut args = h.archive_args();
        let at = args.iter().position(|a| a == "--db").unwrap();
        args[at + 1] = db.display().to_string();
        let out = h.bin(&strs(&args));
        out.assert_exit(2, &db.display().to_string());
        let t = out.text();
        assert!(
            t.contains(needle) && t.contains(&db.display().to_string()),
            "{t}"
        );
        assert!(!db.exists());
    }
    assert!(h.requests().is_empty());

    // A read-only file system (where a tmpfs can be mounted): a new archive, and an existing one.
    let existing = h.dir.path().join("existing.db");
    drop(storage::open_rw(&existing).unwrap());
    let out_dir = h.dir.path().join("ro");
    std::fs::create_dir_all(out_dir.join("mnt")).unwrap();
    let script = r#"
        set -u
        M="$OUT/mnt"
        run() { "$BIN" archive --db "$M/$1" --api-base "$API" --guild "$GUILD" > "$OUT/$1.out" 2> "$OUT/$1.err"; echo $? > "$OUT/$1.rc"; }
        mount -t tmpfs -o size=4m tmpfs "$M" || exit 97
        cp "$EXISTING" "$M/old.db"
        mount -o remount,ro "$M" || exit 98
        run new.db
        run old.db
        cmp "$EXISTING" "$M/old.db" > "$OUT/cmp" 2>&1; echo $? >> "$OUT/cmp"
        "$BIN" status --db "$M/old.db" > "$OUT/status.out" 2>&1; echo $? > "$OUT/status.rc"
        umount "$M"
    "#;
    let guild = h.sim.state().guild_id().to_string();
    let Some(out) = in_mount_namespace(
        script,
        &[
            ("OUT", out_dir.to_str().unwrap()),
            ("API", &h.sim.url()),
            ("GUILD", &guild),
            ("EXISTING", existing.to_str().unwrap()),
            ("DISCORD_TOKEN", TOKEN),
        ],
    ) else {
        return;
    };
    assert!(out.output.status.success(), "script failed:\n{out}");
    let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap();
    for name in ["new.db", "old.db"] {
        let err = read(&format!("{name}.err"));
        assert_eq!(read(&format!("{name}.rc")).trim(), "2", "{name}: {err}");
        assert!(
            err.contains(name) && err.contains("Read-only file system"),
            "{name}: {err}"
        );
    }
    assert_eq!(read("cmp").trim(), "0", "the existing archive is unchanged");
    // Stage 2 reads an archive stored read-only.
    assert_eq!(read("status.rc").trim(), "0", "{}", read("status.out"));
    assert!(h.requests().is_empty());
}

/// `--stats-json` naming something that cannot be written at the end (here `/dev/full`, which
/// passes the checks made before the run: a directory or a missing one would not): the archive
/// completes, the error names the file, and the exit code says something went wrong.
#[test]
fn an_unwritable_stats_json_path_is_reported() {
    let h = Harness::small();
    let stats = std::path::PathBuf::from("/dev/full");
    let mut args = h.archive_args();
    args.extend(["--stats-json".into(), stats.display().to_string()]);
    let out = h.bin(&strs(&args));
    out.assert_exit(1, "stats-json unwritable");
    assert!(out.text().contains(&stats.display().to_string()), "{out}");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
}

// ---------------------------------------------------------------------------------------------
// 4. Bad input
// ---------------------------------------------------------------------------------------------

/// One bad input: the config file text (if any), extra arguments, environment, and what the
/// message must contain.
struct BadInput {
    /// Without a target (`--channel`), the run would stop at "nothing to archive".
    target: bool,
    config: Option<&'static str>,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    needles: &'static [&'static str],
}

const fn file(text: &'static str, needles: &'static [&'static str]) -> BadInput {
    BadInput {
        target: true,
        config: Some(text),
        args: &[],
        env: &[],
        needles,
    }
}

const fn arg(args: &'static [&'static str], needles: &'static [&'static str]) -> BadInput {
    BadInput {
        target: true,
        config: None,
        args,
        env: &[],
        needles,
    }
}

const fn env(
    env: &'static [(&'static str, &'static str)],
    needles: &'static [&'static str],
) -> BadInput {
    BadInput {
        target: true,
        config: None,
        args: &[],
        env,
        needles,
    }
}

/// An environment value meaning "leave the variable unset".
const UNSET: &str = "<unset>";

const BAD_INPUTS: &[BadInput] = &[
    // Malformed TOML: the line.
    file("[fetch\nbatch_size = 1\n", &["line 1"]),
    file("database = \"a.db\"\n\nbatch_size = = 3\n", &["line 3"]),
    file("database = \"unterminated\n", &["line 1"]),
    file(
        "[fetch]\nbatch_size = 1\nbatch_size = 2\n",
        &["batch_size", "line 3"],
    ),
    file("[fetch]\n[fetch]\n", &["fetch", "line 2"]),
    // Unknown keys: the key and the line.
    file("databse = \"a.db\"\n", &["databse", "line 1"]),
    file(
        "\n[rate_limit]\nglobal_per_sec = 5\n",
        &["global_per_sec", "line 3"],
    ),
    file(
        "[[guilds]]\nid = 1234567890\nexclude = []\n",
        &["exclude", "line 3"],
    ),
    file("[fetchh]\nbatch_size = 1\n", &["fetchh", "line 1"]),
    // Wrong types.
    file(
        "[fetch]\nbatch_size = \"100\"\n",
        &["fetch.batch_size", "line 2"],
    ),
    file("[filters]\nskip_bots = \"yes\"\n", &["skip_bots", "line 2"]),
    file(
        "[rate_limit]\nglobal_per_second = \"fast\"\n",
        &["global_per_second", "line 2"],
    ),
    file("[filters]\nblacklist = \"123\"\n", &["blacklist", "line 2"]),
    file("[[channels]]\nid = true\n", &["id", "line 2"]),
    file("database = 5\n", &["database", "line 1"]),
    file("fetch = 3\n", &["fetch", "line 1"]),
    file("[fetch]\nbatch_size = 1.5\n", &["batch_size", "line 2"]),
    // Impossible values.
    file("[fetch]\nbatch_size = 0\n", &["fetch.batch_size", "line 2"]),
    file(
        "[fetch]\nbatch_size = 1000000\n",
        &["fetch.batch_size", "line 2"],
    ),
    file(
        "[fetch]\nbatch_size = -1\n",
        &["fetch.batch_size", "line 2"],
    ),
    file(
        "[rate_limit]\nglobal_per_second = 0\n",
        &["global_per_second", "line 2"],
    ),
    file(
        "[rate_limit]\nglobal_per_second = -5\n",
        &["global_per_second", "line 2"],
    ),
    file(
        "[rate_limit]\nglobal_per_second = nan\n",
        &["global_per_second", "line 2"],
    ),
    file(
        "[rate_limit]\nglobal_per_second = inf\n",
        &["global_per_second", "line 2"],
    ),
    file(
        "[rate_limit]\nbackoff_cap_seconds = 0\n",
        &["backoff_cap_seconds", "line 2"],
    ),
    file(
        "[rate_limit]\nrequest_delay_seconds = -1\n",
        &["request_delay_seconds", "line 2"],
    ),
    file(
        "[rate_limit]\nmax_retries = -1\n",
        &["max_retries", "line 2"],
    ),
    file(
        "[fetch]\nmax_concurrent_channels = 0\n",
        &["max_concurrent_channels", "line 2"],
    ),
    file(
        "[fetch]\nprogress_interval = 0\n",
        &["progress_interval", "line 2"],
    ),
    file("token_env = \"not a name\"\n", &["token_env", "line 1"]),
    file(
        "api_base = \"ftp://example.com\"\n",
        &["api_base", "line 1"],
    ),
    file("database = \"\"\n", &["database", "line 1"]),
    // IDs that are not snowflakes.
    file(
        "[[guilds]]\nid = \"general\"\n",
        &["id", "line 2", "snowflake"],
    ),
    file("[[channels]]\nid = 0\n", &["id", "line 2"]),
    file("[[channels]]\nid = -4\n", &["id", "line 2"]),
    file(
        "[filters]\nblacklist = [\"12x\"]\n",
        &["blacklist", "line 2"],
    ),
    file(
        "[[guilds]]\nid = 1\nexclude_channels = [\"c\"]\n",
        &["exclude_channels", "line 3"],
    ),
    arg(&["--channel", "12a"], &["--channel", "snowflake"]),
    arg(&["--channel", "0"], &["--channel", "snowflake"]),
    arg(
        &["--channel", "99999999999999999999"],
        &["--channel", "too large"],
    ),
    arg(&["--guild", "my-guild"], &["--guild", "snowflake"]),
    arg(&["--channel", "1", "--after", "yesterday"], &["--after"]),
    arg(&["--channel", "1", "--before", "2024-13-45"], &["--before"]),
    arg(
        &["--channel", "1", "--after", "200", "--before", "100"],
        &["--before"],
    ),
    // Impossible values on the command line.
    arg(
        &["--channel", "1", "--limit", "0"],
        &["--limit", "at least 1"],
    ),
    arg(&["--channel", "1", "--limit", "-3"], &["--limit"]),
    arg(
        &["--channel", "1", "--limit", "many"],
        &["--limit", "whole number"],
    ),
    arg(
        &["--channel", "1", "--rate", "0"],
        &["--rate", "greater than 0"],
    ),
    arg(
        &["--channel", "1", "--rate", "-1"],
        &["--rate", "greater than 0"],
    ),
    arg(
        &["--channel", "1", "--concurrency", "0"],
        &["--concurrency"],
    ),
    arg(&["--channel", "1", "--batch-size", "0"], &["--batch-size"]),
    arg(
        &["--channel", "1", "--max-retries", "-2"],
        &["--max-retries"],
    ),
    arg(
        &["--channel", "1", "--progress", "sideways"],
        &["--progress"],
    ),
    arg(
        &["--channel", "1", "--api-base", "http://x/api/v10"],
        &["--api-base", "path"],
    ),
    arg(
        &["--channel", "1", "--api-base", "127.0.0.1:80"],
        &["--api-base", "http"],
    ),
    arg(
        &["--channel", "1", "--config", "/nonexistent/archiver.toml"],
        &["/nonexistent/archiver.toml", "does not exist"],
    ),
    BadInput {
        target: false,
        config: None,
        args: &[],
        env: &[],
        needles: &["nothing to archive", "--guild"],
    },
    arg(
        &["--channel", "1", "--no-such-option"],
        &["--no-such-option"],
    ),
    // The environment.
    env(
        &[("MESSAGE_FETCH_BATCH_SIZE", "0")],
        &["MESSAGE_FETCH_BATCH_SIZE"],
    ),
    env(
        &[("MESSAGE_FETCH_BATCH_SIZE", "lots")],
        &["MESSAGE_FETCH_BATCH_SIZE", "whole number"],
    ),
    env(&[("MESSAGE_FETCH_DELAY", "-1")], &["MESSAGE_FETCH_DELAY"]),
    env(
        &[("MESSAGE_FETCH_MAX_RETRIES", "x")],
        &["MESSAGE_FETCH_MAX_RETRIES"],
    ),
    env(
        &[("MESSAGE_FETCH_PROGRESS_INTERVAL", "0")],
        &["MESSAGE_FETCH_PROGRESS_INTERVAL"],
    ),
    env(
        &[("BLACKLIST_IDS", "1,two,3")],
        &["BLACKLIST_IDS", "snowflake"],
    ),
    // The token: missing, empty, or in a variable that is not set.
    env(
        &[("DISCORD_TOKEN", UNSET)],
        &["DISCORD_TOKEN", "not set", "export DISCORD_TOKEN"],
    ),
    file(
        "token_env = \"MY_ARCHIVER_TOKEN\"\n",
        &["MY_ARCHIVER_TOKEN", "not set"],
    ),
    env(&[("DISCORD_TOKEN", "")], &["DISCORD_TOKEN", "empty"]),
    env(
        &[("DISCORD_TOKEN", "  \n")],
        &["DISCORD_TOKEN", "export DISCORD_TOKEN"],
    ),
    env(
        &[("DISCORD_TOKEN", "abc\u{7}def")],
        &["DISCORD_TOKEN", "control"],
    ),
];

/// Every bad input: exit 2 before any request, no archive created, and a message that names the
/// key and line (or the option, or the variable) or says how to fix it.
#[test]
fn bad_input_is_refused_with_exit_2_and_a_message_that_says_where() {
    let h = Harness::small();
    let config_path = h.dir.path().join("archiver.toml");
    let mut tried = 0;
    for (i, case) in BAD_INPUTS.iter().enumerate() {
        let db = h.dir.path().join(format!("bad-{i}.db"));
        let mut args: Vec<String> = vec!["archive".into(), "--db".into(), db.display().to_string()];
        if !case.args.contains(&"--api-base") {
            args.extend(["--api-base".into(), h.sim.url()]);
        }
        if let Some(text) = case.config {
            std::fs::write(&config_path, text).unwrap();
            args.extend(["--config".into(), config_path.display().to_string()]);
        }
        let names_target = case
            .args
            .iter()
            .any(|a| *a == "--channel" || *a == "--guild");
        if case.target && !names_target {
            args.extend(["--channel".into(), "1234567890".into()]);
        }
        args.extend(case.args.iter().map(|a| a.to_string()));
        let mut env: Vec<(&str, &str)> = case
            .env
            .iter()
            .copied()
            .filter(|(_, v)| *v != UNSET)
            .collect();
        if !case.env.iter().any(|(k, _)| *k == "DISCORD_TOKEN") {
            env.push(("DISCORD_TOKEN", TOKEN));
        }
        let out = h.bin_env(&strs(&args), &env);
        let what = format!(
            "case {i} ({:?} {:?} {:?})",
            case.config, case.args, case.env
        );
        out.assert_exit(2, &what);
        let t = out.text();
        for needle in case.needles {
            assert!(
                t.contains(needle),
                "{what}: the message names {needle:?}: {t}"
            );
        }
        assert!(!t.contains("panicked"), "{what}: {t}");
        assert!(!db.exists(), "{what}: no archive is created");
        tried += 1;
    }
    assert!(h.requests().is_empty(), "no request was made");
    eprintln!("bad inputs refused: {tried}");
}

/// The config loader on structured TOML: arbitrary tables, keys (known and not) and values of
/// every type. It never panics, and every error it returns names a line inside the text.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0",
            "-0",
            "1",
            "-1",
            "100",
            "10001",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615",
            "0.0",
            "-0.0",
            "1e300",
            "-1e-300",
            "nan",
            "+inf",
            "-inf",
            "0.5",
            "1_000",
        ])
        .prop_map(str::to_owned),
        any::<f64>().prop_map(|x| format!("{x:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z0-9 ._:/-]{0,12}".prop_map(|s| format!("{s:?}")),
        "\\PC{0,10}".prop_map(|s| format!("{s:?}")),
        prop::collection::vec("[0-9]{1,20}", 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        prop::collection::vec("[0-9a-z]{0,6}", 0..3).prop_map(|v| format!(
            "[{}]",
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Just("{ a = 1 }".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
    ]
}

fn toml_document() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "database",
        "token_env",
        "api_base",
        "global_per_second",
        "max_retries",
        "backoff_cap_seconds",
        "request_delay_seconds",
        "batch_size",
        "progress_interval",
        "max_concurrent_channels",
        "max_restarts",
        "include_threads",
        "skip_bots",
        "skip_empty",
        "command_prefix",
        "blacklist",
        "id",
        "exclude_channels",
        "unknown_key",
        "batch_sise",
    ]);
    let tables = prop::sample::select(vec![
        "",
        "[rate_limit]",
        "[fetch]",
        "[filters]",
        "[[guilds]]",
        "[[channels]]",
        "[other]",
        "[fetch.deeper]",
    ]);
    prop::collection::vec(
        (tables, prop::collection::vec((keys, toml_value()), 0..5)),
        0..5,
    )
    .prop_map(|sections| {
        let mut text = String::new();
        for (table, entries) in sections {
            text.push_str(table);
            text.push('\n');
            for (k, v) in entries {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, .. ProptestConfig::default() })]

    #[test]
    fn the_config_loader_never_panics_and_blames_a_real_line(text in toml_document()) {
        let lines = text.lines().count().max(1);
        match config::parse_config_file(Path::new("fuzz.toml"), &text) {
            Ok(settings) => {
                prop_assert!(settings.fetch.batch_size >= 1);
                prop_assert!(settings.rate.global_per_second > 0.0 && settings.rate.global_per_second.is_finite());
                prop_assert!(settings.fetch.max_concurrent_channels >= 1);
                prop_assert!(settings.fetch.progress_interval >= 1);
                prop_assert!(!settings.rate.backoff_cap.is_zero());
                prop_assert!(settings.guilds.iter().all(|g| g.id > 0 && g.id <= i64::MAX as u64));
                prop_assert!(settings.channels.iter().all(|c| *c > 0 && *c <= i64::MAX as u64));
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.starts_with("fuzz.toml"), "{message}");
                match e {
                    config::ConfigError::FileValue { line, .. } | config::ConfigError::FileSyntax { line, .. } => {
                        prop_assert!(line >= 1 && line <= lines + 1, "line {line} of {lines}: {message}");
                    }
                    other => prop_assert!(false, "unexpected error kind: {other}"),
                }
            }
        }
    }

    #[test]
    fn the_config_loader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = config::parse_config_file(Path::new("bytes.toml"), &text);
    }

    /// The header parser: any names, any bytes, in any case; what it keeps is always sane.
    #[test]
    fn rate_limit_headers_never_panic_and_keep_only_sane_values(
        pairs in prop::collection::vec(
            (
                prop_oneof![
                    prop::sample::select(vec![
                        "x-ratelimit-limit", "X-RateLimit-Remaining", "x-ratelimit-reset",
                        "X-RATELIMIT-RESET-AFTER", "x-ratelimit-bucket", "x-ratelimit-global",
                        "x-ratelimit-scope", "retry-after", "x-ratelimit-", "x-ratelimit",
                    ]).prop_map(str::to_owned),
                    "\\PC{0,30}",
                ],
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..40),
                    "[-+0-9.eE ]{0,24}".prop_map(String::into_bytes),
                    any::<f64>().prop_map(|x| x.to_string().into_bytes()),
                    any::<u64>().prop_map(|x| x.to_string().into_bytes()),
                    Just(b"true".to_vec()),
                    "\\PC{0,300}".prop_map(String::into_bytes),
                ],
            ),
            0..12,
        )
    ) {
        // One clock for both parses: a reset given only as a time is turned into seconds from
        // `now`, and two readings of the clock differ.
        let now = 1_700_000_000.0;
        let h = RateLimitHeaders::parse_at(pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice())), now);
        if let Some(r) = h.reset_after {
            prop_assert!(r.is_finite() && r >= 0.0);
        }
        prop_assert!(h.bucket.as_ref().is_none_or(|b| !b.is_empty() && b.len() <= 128));
        prop_assert!(h.scope.as_ref().is_none_or(|s| s.len() <= 32));
        // Names are case-insensitive.
        let shouted: Vec<(String, &[u8])> = pairs.iter().map(|(k, v)| (k.to_ascii_uppercase(), v.as_slice())).collect();
        let shouted = RateLimitHeaders::parse_at(shouted.iter().map(|(k, v)| (k.as_str(), *v)), now);
        prop_assert_eq!(h, shouted);
    }

    /// Page bodies: arbitrary bytes never panic; a well-formed page of arbitrary messages keeps
    /// each message's exact bytes.
    #[test]
    fn page_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_messages(bytes);
    }

    #[test]
    fn page_parsing_keeps_raw_json_exact(
        messages in prop::collection::btree_map(1u64..(1 << 62), ("\\PC{0,40}", any::<bool>(), prop::sample::select(vec!["", " ", "\n  "])), 0..30)
    ) {
        let raws: Vec<String> = messages
            .iter()
            .rev()
            .map(|(id, (content, bot, ws))| {
                format!(
                    r#"{{{ws}"id":"{id}","type":0,"content":{},"author":{{"id":"42","username":"u","bot":{bot}}},"timestamp":"2024-05-01T12:34:56.789000+00:00","x_new":[1,{{"y":null}}]{ws}}}"#,
                    serde_json::to_string(content).unwrap()
                )
            })
            .collect();
        let body = format!("[{}]", raws.join(" ,\n"));
        let page = parse_messages(body.into_bytes()).unwrap();
        prop_assert_eq!(page.returned, messages.len());
        let ids: Vec<u64> = page.messages.iter().map(|m| m.id).collect();
        prop_assert_eq!(ids, messages.keys().copied().collect::<Vec<_>>());
        for (m, raw) in page.messages.iter().zip(raws.iter().rev()) {
            prop_assert_eq!(m.raw.as_str(), raw.as_str());
            prop_assert_eq!(&m.content, &messages[&m.id].0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. The token is a secret
// ---------------------------------------------------------------------------------------------

/// A distinctive token, shaped like a real one.
const SECRET: &str = "MTE5NzQ0MjQ5ODc2NTQzMjEw.GzQx7b.S3cr3t-t0k3n_never-LOGGED-4f9c2e";

/// Pieces of the token that must not appear either (a log line could cut or encode it).
fn secret_fragments() -> Vec<String> {
    let mut out: Vec<String> = SECRET.split('.').map(str::to_owned).collect();
    out.push(SECRET.to_owned());
    out.push(format!("Bot {SECRET}"));
    out
}

fn assert_no_secret(what: &str, bytes: &[u8]) {
    let haystack = String::from_utf8_lossy(bytes);
    for fragment in secret_fragments() {
        assert!(
            !haystack.contains(&fragment),
            "the token (or {fragment:?}) appears in {what}"
        );
    }
}

/// Runs with tracing at trace level (`-vv` and `RUST_LOG=trace`), faults, a panicking fetcher,
/// a failing channel and a revoked token, and searches every output and file for the token.
#[test]
fn the_token_never_appears_in_logs_errors_the_database_or_stats() {
    let sim = simulator::spawn(
        SimConfig {
            seed: 700,
            token: SECRET.into(),
            guild: GuildSpec::test_small(),
            faults: FaultSpec {
                http_500: 0.05,
                html_502: 0.03,
                rate_limit_429: 0.05,
                truncated_body: 0.03,
                malformed_json: 0.03,
                retry_after: 0.02,
                ..FaultSpec::default()
            },
            ..SimConfig::default()
        },
        0,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("archive.db");
    let stats = dir.path().join("stats.json");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[rate_limit]\nbackoff_cap_seconds = 0.02\nmax_retries = 8\n",
    )
    .unwrap();
    let panicking = sim
        .state()
        .channel_id_by_name("hundred")
        .unwrap()
        .to_string();
    let base_args: Vec<String> = vec![
        "archive".into(),
        "--db".into(),
        db.display().to_string(),
        "--api-base".into(),
        sim.url(),
        "--guild".into(),
        sim.state().guild_id().to_string(),
        "--config".into(),
        config.display().to_string(),
        "--progress".into(),
        "log".into(),
        "--stats-json".into(),
        stats.display().to_string(),
    ];
    let panic_env = format!("{panicking}:1");
    let mut outputs = Vec::new();
    // -vv (trace for our crate), then RUST_LOG=trace (every crate: twilight, hyper, actix).
    let mut vv = base_args.clone();
    vv.insert(0, "-vv".into());
    let out = run_bin(
        &strs(&vv),
        &[
            ("DISCORD_TOKEN", SECRET),
            ("DISCORD_ARCHIVER_TEST_PANIC", &panic_env),
        ],
    );
    out.assert_exit(0, "-vv run");
    assert!(
        out.text().contains("TRACE") || out.text().contains("DEBUG"),
        "tracing is on"
    );
    assert!(
        out.text().contains("injected fetcher panic"),
        "the panic message is in the output"
    );
    outputs.push(("-vv run", out));
    let out = run_bin(
        &strs(&base_args),
        &[("DISCORD_TOKEN", SECRET), ("RUST_LOG", "trace")],
    );
    out.assert_exit(0, "RUST_LOG=trace run");
    outputs.push(("RUST_LOG=trace run", out));
    // A wrong token and a revoked one: the error paths.
    let wrong = format!("{SECRET}x");
    let out = run_bin(
        &strs(&vv),
        &[("DISCORD_TOKEN", &wrong), ("RUST_LOG", "trace")],
    );
    out.assert_exit(2, "wrong token");
    assert!(!out.text().contains(&wrong));
    outputs.push(("wrong-token run", out));
    sim.state().revoke_token();
    let out = run_bin(
        &strs(&vv),
        &[("DISCORD_TOKEN", SECRET), ("RUST_LOG", "trace")],
    );
    out.assert_exit(2, "revoked token");
    outputs.push(("revoked-token run", out));
    // status and export at trace level.
    for cmd in [
        vec!["-vv", "status", "--db", db.to_str().unwrap(), "--json"],
        vec!["-vv", "export", "--db", db.to_str().unwrap()],
    ] {
        let out = run_bin(&cmd, &[("DISCORD_TOKEN", SECRET), ("RUST_LOG", "trace")]);
        out.assert_exit(0, cmd[1]);
        outputs.push((cmd[1], out));
    }

    let mut searched = 0usize;
    for (what, out) in &outputs {
        assert_no_secret(&format!("{what} stdout"), &out.output.stdout);
        assert_no_secret(&format!("{what} stderr"), &out.output.stderr);
        searched += out.output.stdout.len() + out.output.stderr.len();
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        searched += bytes.len();
        assert_no_secret(&path.display().to_string(), &bytes);
    }
    assert!(stats.exists());
    // What the runs table recorded, and the raw pages, once more through SQL (not only bytes).
    let mut conn = conn_at(&db);
    #[derive(diesel::QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        t: String,
    }
    let all: Vec<Text> = diesel::sql_query(
        "SELECT COALESCE(stats_json, '') || command AS t FROM runs UNION ALL SELECT value FROM archive_meta UNION ALL SELECT raw_json FROM messages",
    )
    .load(&mut conn)
    .unwrap();
    for row in &all {
        assert_no_secret("a database value", row.t.as_bytes());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the archive is private");
    }
    eprintln!(
        "token search: {searched} bytes of output and files, {} runs",
        outputs.len()
    );
}

/// The in-process API: `Debug` of every value that holds or is near the token redacts it, and a
/// run's errors never carry it.
#[test]
fn debug_output_and_errors_never_show_the_token() {
    let token = Token::new(SECRET);
    assert_no_secret("Token Debug", format!("{token:?}").as_bytes());
    assert_no_secret("Token Display", format!("{token}").as_bytes());
    let client = actix::System::new().block_on(async {
        discord_archiver::discord::DiscordClient::new(&token, None, Duration::from_secs(1))
    });
    assert_no_secret("DiscordClient Debug", format!("{client:?}").as_bytes());
    let sim = simulator::spawn(
        SimConfig {
            token: "other".into(),
            ..SimConfig::default()
        },
        0,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        database: dir.path().join("a.db"),
        api_base: Some(config::ApiBase {
            host_port: sim.addr().to_string(),
            use_http: true,
        }),
        channels: vec![1234567890],
        ..Settings::default()
    };
    assert_no_secret("Settings Debug", format!("{settings:?}").as_bytes());
    let err = actix::System::new()
        .block_on(app::archive(
            settings,
            Token::new(SECRET),
            RunOptions::default(),
        ))
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert_no_secret("RunError Display", err.to_string().as_bytes());
    assert_no_secret("RunError Debug", format!("{err:?}").as_bytes());
}
