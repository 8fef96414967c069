//! End to end: the archiver against the simulator over loopback, in-process and as the binary.

use crate::util::*;
use discord_archiver::app::RunOptions;
use discord_archiver::simulator::{BucketSpec, FaultSpec, GuildSpec, SimConfig};
use discord_archiver::stats::ChannelStatus;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A guild of one text channel.
fn one_channel(name: &str, messages: u64) -> GuildSpec {
    GuildSpec {
        channels: vec![discord_archiver::simulator::ChannelSpec::text(
            name, messages,
        )],
        ..GuildSpec::test_small()
    }
}

/// A guild of one channel whose server misbehaves as `faults` (given the channel's ID) says:
/// the harness and the channel.
fn one_faulty_channel(
    name: &str,
    messages: u64,
    faults: impl FnOnce(u64) -> FaultSpec,
) -> (Harness, u64) {
    let h = Harness::new(SimConfig {
        guild: one_channel(name, messages),
        ..SimConfig::default()
    });
    let channel = h.channel_id(name);
    h.sim.state().set_faults(faults(channel));
    (h, channel)
}

fn message_requests(requests: &[String]) -> Vec<&String> {
    requests
        .iter()
        .filter(|r| r.contains("/messages?"))
        .collect()
}

#[test]
fn archive_equals_the_simulators_truth() {
    let h = Harness::small();
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    let expected = h.expected(&BTreeSet::new());
    assert!(
        expected.len() > 3_000,
        "the preset is big enough to mean something"
    );
    assert_same_rows(&h.archived(), &expected);

    // Checkpoints: at each readable channel's newest message, complete, counts right.
    let checkpoints = h.checkpoints();
    for channel in h.readable_message_channels() {
        let truth = h.sim.state().truth(channel);
        let cp = &checkpoints[&(channel as i64)];
        assert_eq!(cp.last_message_id, truth.last().map_or(0, |m| m.0 as i64));
        assert!(cp.complete, "channel {channel} complete");
        let stored = expected
            .values()
            .filter(|r| r.channel_id == channel as i64)
            .count();
        assert_eq!(cp.total_messages, stored as i64);
    }

    // The statistics add up: everything received is stored or skipped for a reason.
    let t = &report.totals;
    assert_eq!(t.successfully_loaded as usize, expected.len());
    assert_eq!(t.total_processed, t.successfully_loaded + t.skipped());
    assert!(t.skipped_bot_messages > 0 && t.skipped_commands > 0 && t.skipped_empty_messages > 0);

    // The inaccessible channel is reported and skipped; the category is never asked for messages.
    let no_access = h.channel_id("secret");
    assert!(matches!(
        report.channels[&no_access].status,
        ChannelStatus::Skipped(ref why) if why.contains("no access") || why.contains("View Channel")
    ));
    let requests = h.requests();
    let category = h.channel_id("archive");
    assert!(!requests
        .iter()
        .any(|r| r.contains(&format!("channels/{category}/"))));
}

#[test]
fn a_second_run_on_an_unchanged_guild_makes_only_listing_requests() {
    let h = Harness::small();
    let first = h.run(h.settings(), RunOptions::default());
    assert_eq!(first.exit_code, 0);
    let before = h.requests().len();
    let archived = h.archived();
    let second = h.run(h.settings(), RunOptions::default());
    assert_eq!(second.exit_code, 0);
    let new_requests: Vec<String> = h.requests()[before..].to_vec();
    assert!(
        message_requests(&new_requests).is_empty(),
        "{new_requests:#?}"
    );
    assert_eq!(second.totals.successfully_loaded, 0);
    assert_eq!(
        second.totals.resumed_from_checkpoint as usize,
        h.readable_message_channels().len()
    );
    assert_eq!(h.archived(), archived);
}

#[test]
fn resuming_a_listed_channel_asks_for_one_page() {
    let h = Harness::small();
    let channel = h.channel_id("two-fifty");
    let mut settings = h.settings();
    settings.guilds.clear();
    settings.channels = vec![channel];
    h.run(settings.clone(), RunOptions::default());
    let before = h.requests().len();
    let again = h.run(settings, RunOptions::default());
    assert_eq!(again.exit_code, 0);
    assert_eq!(again.totals.resumed_from_checkpoint, 1);
    let new_requests: Vec<String> = h.requests()[before..].to_vec();
    // The token check and one page after the checkpoint: nothing else.
    assert_eq!(
        message_requests(&new_requests).len(),
        1,
        "{new_requests:#?}"
    );
    assert_eq!(new_requests.len(), 2, "{new_requests:#?}");
}

/// Runs with a crash after `k` committed batches, resumes, and checks the result is the
/// uninterrupted archive, having re-fetched at most one page per channel.
fn crash_and_resume(k: u64, batch_size: usize) {
    let h = Harness::small();
    let mut settings = h.settings();
    settings.fetch.batch_size = batch_size;
    settings.fetch.max_concurrent_channels = 3;
    let halted = h.run(
        settings.clone(),
        RunOptions {
            halt_after_batches: Some(k),
            ..RunOptions::default()
        },
    );
    let first_run: BTreeSet<String> = message_requests(&h.requests())
        .into_iter()
        .cloned()
        .collect();
    let first_len = h.requests().len();
    let committed = h.checkpoints();
    let resumed = h.run(settings, RunOptions::default());
    assert_eq!(
        resumed.exit_code, 0,
        "resume after {k} batches: {resumed:#?}"
    );
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));

    // Pages fetched again: requests of the second run that the first already made.
    let again = h.requests()[first_len..]
        .iter()
        .filter(|r| first_run.contains(*r))
        .cloned()
        .collect::<Vec<_>>();
    let mut per_channel: BTreeMap<String, usize> = BTreeMap::new();
    for r in &again {
        let channel = r.split('/').nth(4).unwrap_or_default().to_owned();
        *per_channel.entry(channel).or_default() += 1;
    }
    for (channel, n) in per_channel {
        // The no-access channel's refused request does not count: it has no page.
        if channel == h.channel_id("secret").to_string() {
            continue;
        }
        assert!(
            n <= 1,
            "channel {channel} re-fetched {n} pages after a crash at batch {k} ({halted:?} {committed:?})"
        );
    }
}

#[test]
fn crash_after_each_of_many_batches_resumes_to_the_same_archive() {
    for k in [0, 1, 2, 7, 20, 33] {
        crash_and_resume(k, 100);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn any_crash_point_and_batch_size_resumes_exactly(k in 0u64..80, batch_size in prop::sample::select(vec![1usize, 37, 100])) {
        crash_and_resume(k, batch_size);
    }
}

#[test]
fn explicit_ranges_never_move_a_checkpoint_past_a_gap() {
    let h = Harness::small();
    let channel = h.channel_id("three-thousand");
    let truth = h.sim.state().truth(channel);
    let mut settings = h.settings();
    settings.guilds.clear();
    settings.channels = vec![channel];

    // A window in the middle: stored, but the checkpoint must not claim the gap before it.
    settings.bounds.after = Some(truth[1000].0);
    settings.bounds.limit = Some(300);
    let report = h.run(settings.clone(), RunOptions::default());
    assert_eq!(report.exit_code, 0);
    assert_eq!(report.totals.total_processed, 300);
    let cp = &h.checkpoints()[&(channel as i64)];
    assert_eq!(cp.last_message_id, 0, "no prefix was fetched");
    assert!(!h.archived().is_empty());

    // From the start with --before: the prefix is fetched, the checkpoint may move to it.
    settings.bounds.after = None;
    settings.bounds.limit = None;
    settings.bounds.before = Some(truth[500].0);
    h.run(settings.clone(), RunOptions::default());
    let cp = &h.checkpoints()[&(channel as i64)];
    assert_eq!(cp.last_message_id, truth[499].0 as i64);
    assert!(!cp.complete);

    // A normal run completes the channel; nothing missing, nothing twice.
    settings.bounds = Default::default();
    h.run(settings, RunOptions::default());
    let cp = &h.checkpoints()[&(channel as i64)];
    assert_eq!(cp.last_message_id, truth.last().unwrap().0 as i64);
    assert!(cp.complete);
    let expected: BTreeMap<_, _> = h
        .expected(&BTreeSet::new())
        .into_iter()
        .filter(|(_, r)| r.channel_id == channel as i64)
        .collect();
    assert_same_rows(&h.archived(), &expected);
}

/// `--limit` below a page asks Discord for no more than that.
#[test]
fn a_limit_below_a_page_asks_for_no_more() {
    let h = Harness::small();
    let channel = h.channel_id("three-thousand");
    let truth = h.sim.state().truth(channel);
    let mut settings = h.settings();
    settings.guilds.clear();
    settings.channels = vec![channel];
    settings.bounds.after = Some(truth[10].0);
    settings.bounds.limit = Some(5);
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_eq!(report.totals.total_processed, 5);
    let requests = h.requests();
    let asked = message_requests(&requests);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].contains("limit=5"), "{asked:?}");
}

#[test]
fn resuming_never_needs_the_checkpoint_message() {
    let h = Harness::small();
    let expected = h.expected(&BTreeSet::new());
    let mut settings = h.settings();
    settings.fetch.max_concurrent_channels = 1;
    h.run(
        settings.clone(),
        RunOptions {
            halt_after_batches: Some(5),
            ..RunOptions::default()
        },
    );
    // Delete every checkpoint message from Discord's side.
    for (channel, cp) in h.checkpoints() {
        if cp.last_message_id > 0 {
            h.sim
                .state()
                .delete_message(channel as u64, cp.last_message_id as u64);
        }
    }
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0);
    assert_same_rows(&h.archived(), &expected);
}

#[test]
fn rate_limits_are_waited_out_and_counted() {
    let h = Harness::new(SimConfig {
        guild: GuildSpec::test_small(),
        bucket: Some(BucketSpec {
            limit: 3,
            window: Duration::from_millis(150),
        }),
        faults: FaultSpec {
            rate_limit_429: 0.05,
            retry_after: 0.05,
            ..FaultSpec::default()
        },
        ..SimConfig::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
    let sim = h.sim.state().stats();
    assert!(
        report.totals.rate_limit_errors > 0,
        "injected 429s are counted"
    );
    assert_eq!(
        sim.rate_limited_caused, 0,
        "the limiter paces each bucket from its headers: no 429 of our making"
    );
}

#[test]
fn a_429_is_retried_at_most_max_retries_times() {
    let h = Harness::small();
    h.sim.state().set_faults(FaultSpec {
        rate_limit_429: 1.0,
        retry_after: 0.01,
        ..FaultSpec::default()
    });
    let mut settings = h.settings();
    settings.rate.max_retries = 3;
    // Every request is refused, starting with the token check: 1 try + 3 retries, then stop.
    let err = h.try_run(settings, RunOptions::default()).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("rate limited"), "{err}");
    assert_eq!(h.requests().len(), 4, "{:#?}", h.requests());
}

#[test]
fn a_global_429_pauses_every_fetcher() {
    let h = Harness::small();
    h.sim.state().set_faults(FaultSpec {
        global_429: 0.02,
        retry_after: 1.5,
        ..FaultSpec::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
    let log = h.sim.state().request_log();
    let globals: Vec<_> = log.iter().filter(|r| r.status == 429).collect();
    assert!(!globals.is_empty(), "the fault fired");
    for g in globals {
        // Nobody sent anything while the global limit was in force. Requests granted before
        // the 429 came back may still arrive (a slow machine gets generous slack for those).
        let during = log
            .iter()
            .filter(|r| r.elapsed_ms > g.elapsed_ms + 500 && r.elapsed_ms < g.elapsed_ms + 1_450)
            .count();
        assert_eq!(
            during,
            0,
            "requests during a global pause after {g:?}: {:#?}",
            log.iter()
                .filter(|r| r.elapsed_ms + 50 > g.elapsed_ms && r.elapsed_ms < g.elapsed_ms + 300)
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn missing_and_forbidden_channels_are_skipped_and_the_run_completes() {
    let h = Harness::small();
    let deleted = h.channel_id("hundred");
    h.sim.state().delete_channel(deleted);
    let mut settings = h.settings();
    settings.guilds.clear();
    settings.channels = vec![
        deleted,
        h.channel_id("secret"),
        h.channel_id("three-thousand"),
    ];
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    let status = |id: u64| report.channels[&id].status.clone();
    assert!(
        matches!(status(deleted), ChannelStatus::Skipped(ref w) if w.contains("unknown channel"))
    );
    assert!(
        matches!(status(h.channel_id("secret")), ChannelStatus::Skipped(ref w) if w.contains("access"))
    );
    assert!(matches!(
        status(h.channel_id("three-thousand")),
        ChannelStatus::Finished
    ));
}

/// A run stopped while a long channel was paged in slices can leave holes between recorded
/// slices (a slice gets its row with its first batch), and a last slice that reached what was
/// then the newest message. The next run must fetch every hole and what came since, once, and
/// fold every slice into the checkpoint.
#[test]
fn resuming_slices_fetches_every_hole_and_what_came_since() {
    use diesel::RunQueryDsl;
    let h = Harness::new(SimConfig {
        guild: one_channel("long", 10_000),
        ..SimConfig::default()
    });
    let channel = h.channel_id("long");
    let t: Vec<i64> = h
        .sim
        .state()
        .truth(channel)
        .iter()
        .map(|(id, _)| *id as i64)
        .collect();
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    let full = h.archived();
    let full_cp = h.checkpoints()[&(channel as i64)].clone();

    // Fetched: up to t[999] (the checkpoint), (t[2999], t[4999]] and (t[6999], t[8999]], the
    // latter the last slice, done at what was then the newest message. Unfetched: the gap
    // before the first slice, the hole between the two, everything after the last.
    let mut conn = h.conn();
    let kept = format!(
        "channel_id = {channel} AND (id <= {} OR (id > {} AND id <= {}) OR (id > {} AND id <= {}))",
        t[999], t[2999], t[4999], t[6999], t[8999]
    );
    diesel::sql_query(format!(
        "DELETE FROM messages WHERE channel_id = {channel} AND NOT ({kept})"
    ))
    .execute(&mut conn)
    .unwrap();
    diesel::sql_query(format!(
        "UPDATE checkpoints SET last_message_id = {}, complete = 0,
             total_messages = (SELECT count(*) FROM messages WHERE {kept})
         WHERE channel_id = {channel}",
        t[999]
    ))
    .execute(&mut conn)
    .unwrap();
    diesel::sql_query(format!(
        "INSERT INTO fetch_slices (channel_id, after_id, until_id, cursor_id, done, reached_end)
         VALUES ({channel}, {a}, {b}, {b}, 1, 0), ({channel}, {c}, {d}, {d}, 1, 1)",
        a = t[2999],
        b = t[4999],
        c = t[6999],
        d = t[8999]
    ))
    .execute(&mut conn)
    .unwrap();
    drop(conn);

    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_same_rows(&h.archived(), &full);
    assert_eq!(h.checkpoints()[&(channel as i64)], full_cp);
    assert!(slices_at(&h.db).is_empty(), "every slice is folded");
}

/// Headers may claim far more than a bucket enforces (DISCORD.md): after the first 429 shows
/// the hidden limit, the bucket is paced to what it really allowed, not to the headers' claim
/// again in every window.
#[test]
fn a_bucket_whose_headers_overstate_its_limit_costs_one_429_not_one_per_window() {
    let h = Harness::new(SimConfig {
        guild: one_channel("busy", 2_000),
        bucket: Some(BucketSpec {
            limit: 4,
            window: Duration::from_millis(400),
        }),
        bucket_claims: Some(50),
        ..SimConfig::default()
    });
    let mut settings = h.settings();
    settings.guilds.clear();
    settings.channels = vec![h.channel_id("busy")];
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
    let sim = h.sim.state().stats();
    // 20 pages: 5 windows of 4. The first 429 reveals the limit; later ones would be ours.
    assert!(
        sim.rate_limited_caused <= 2,
        "429s caused: {} (one per window means the headers were trusted again)",
        sim.rate_limited_caused
    );
}

/// Every 429 the run received is in the totals, discovery's included.
#[test]
fn the_totals_count_every_429_discoverys_too() {
    let h = Harness::new(SimConfig {
        guild: GuildSpec::test_small(),
        faults: FaultSpec {
            rate_limit_429: 0.3,
            retry_after: 0.01,
            ..FaultSpec::default()
        },
        ..SimConfig::default()
    });
    let mut settings = h.settings();
    settings.rate.max_retries = 20;
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    let log = h.sim.state().request_log();
    let served_429 = log.iter().filter(|r| r.status == 429).count() as u64;
    let discovery_429 = log
        .iter()
        .filter(|r| r.status == 429 && !r.path.ends_with("/messages"))
        .count();
    assert!(discovery_429 > 0, "the seed puts some 429s on discovery");
    assert_eq!(report.totals.rate_limit_errors, served_429);
}

/// A server whose messages route ignores `after` answers the same full page forever: the
/// channel fails (exit 1) instead of paging in place until someone kills the run, and is not
/// restarted (asking again brings the same page).
#[test]
fn a_server_ignoring_after_fails_the_channel_instead_of_looping() {
    let (h, stuck) = one_faulty_channel("stuck", 450, |id| FaultSpec {
        ignore_cursor: vec![id],
        ..FaultSpec::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 1, "{report:#?}");
    assert!(
        matches!(&report.channels[&stuck].status, ChannelStatus::Failed(why) if why.contains("after")),
        "{:?}",
        report.channels[&stuck].status
    );
    assert_eq!(report.channels[&stuck].stats.restarts, 0);
    let pages = message_requests(&h.requests()).len();
    assert!(pages < 10, "{pages} requests");
}

/// Discord ends a channel with a page shorter than `limit`, but a server that answers fewer
/// per page (a stand-in or proxy with a smaller page size) sends short pages all along. While
/// the listing names a newer message, a short page is not taken as the end: the checkpoint
/// never claims messages that were not fetched, and every message is archived.
#[test]
fn a_short_page_before_the_listed_newest_message_is_not_the_end() {
    let (h, halves) = one_faulty_channel("halves", 450, |id| FaultSpec {
        short_pages: vec![id],
        ..FaultSpec::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_eq!(report.totals.total_processed, 450);
    assert_eq!(h.archived(), h.expected_in(&[halves], &BTreeSet::new()));
    // 450 messages at 50 a page: the last one reaches the listed newest message.
    assert_eq!(message_requests(&h.requests()).len(), 9);
}

/// One channel of 60 messages whose newest was deleted after the listing named it: the
/// harness, the channel and that message.
fn newest_message_deleted() -> (Harness, u64, u64) {
    let h = Harness::new(SimConfig {
        guild: one_channel("general", 60),
        ..SimConfig::default()
    });
    let general = h.channel_id("general");
    let newest = h.sim.state().truth(general).last().unwrap().0;
    h.sim.state().delete_message(general, newest);
    (h, general, newest)
}

/// The listing may name a message that was deleted since (DISCORD.md): the channel's last
/// page then ends short of it. One more request confirms that nothing lies between, and the
/// channel is complete up to the listed message, so the next run asks nothing, and the first
/// page of a small channel is not taken for the start of a long one (no split into slices).
#[test]
fn a_deleted_newest_message_costs_one_confirming_request_once() {
    let (h, general, newest) = newest_message_deleted();
    for run in 0..2 {
        let report = h.run(h.settings(), RunOptions::default());
        assert_eq!(report.exit_code, 0, "run {run}: {report:#?}");
        let cp = &h.checkpoints()[&(general as i64)];
        assert_eq!(cp.last_message_id, newest as i64, "run {run}");
        assert!(cp.complete, "run {run}");
    }
    // The short page and the empty one that confirms the end; nothing on the second run.
    assert_eq!(message_requests(&h.requests()).len(), 2);
}

/// A server that ignores `after` and answers a short page that ends before the listed newest
/// message: the same page again does not move the cursor, so it is not followed forever.
#[test]
fn a_short_page_answered_again_ends_the_span() {
    let (h, general, _) = newest_message_deleted();
    h.sim.state().set_faults(FaultSpec {
        ignore_cursor: vec![general],
        ..FaultSpec::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_eq!(message_requests(&h.requests()).len(), 2);
    assert_eq!(report.totals.total_processed, 59);
}

/// A 404 on the messages route without Discord's Unknown Channel code (10003) is a server
/// that does not serve the route (a wrong API base, a partial proxy), not a deleted channel:
/// the channel fails (exit 1), naming what to check, instead of being skipped as gone.
#[test]
fn a_404_that_is_not_unknown_channel_fails_instead_of_skipping() {
    let (h, general) = one_faulty_channel("general", 150, |id| FaultSpec {
        unserved_paths: vec![format!("/channels/{id}/messages")],
        ..FaultSpec::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 1, "{report:#?}");
    assert!(
        matches!(&report.channels[&general].status, ChannelStatus::Failed(why) if why.contains("--api-base")),
        "{:?}",
        report.channels[&general].status
    );
    assert_eq!(report.channels[&general].stats.restarts, 0);
    assert!(h.checkpoints().is_empty());
}

/// A channel whose messages were all deleted still lists the last one's ID. With the bot's
/// right to read its history shown by the permission math, the empty answer means nothing is
/// left to read, not a missing permission: the channel is finished, not reported (and set
/// aside for a day) as unreadable.
#[test]
fn a_channel_whose_messages_were_all_deleted_is_finished_not_skipped() {
    let h = Harness::new(SimConfig {
        guild: one_channel("emptied", 3),
        ..SimConfig::default()
    });
    let emptied = h.channel_id("emptied");
    for (id, _) in h.sim.state().truth(emptied) {
        h.sim.state().delete_message(emptied, id);
    }
    for run in 0..2 {
        let report = h.run(h.settings(), RunOptions::default());
        assert_eq!(report.exit_code, 0, "{report:#?}");
        assert!(
            matches!(report.channels[&emptied].status, ChannelStatus::Finished),
            "run {run}: {:?}",
            report.channels[&emptied].status
        );
    }
    let asked = message_requests(&h.requests()).len();
    assert_eq!(asked, 2, "asked on each run");
    assert!(h.archived().is_empty());
}
