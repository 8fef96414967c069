//! A whole guild, supervised: every channel kind, threads, permissions, restarts, shutdown.

use crate::util::*;
use discord_archiver::app::RunOptions;
use discord_archiver::simulator::{FaultSpec, GuildSpec, LoggedRequest, SimConfig};
use discord_archiver::stats::ChannelStatus;
use std::collections::BTreeSet;
use std::time::Duration;

fn full() -> Harness {
    Harness::new(SimConfig {
        guild: GuildSpec::full(),
        ..SimConfig::default()
    })
}

/// The channel ID in a message-route request path, if it is one.
fn messages_channel(path: &str) -> Option<u64> {
    let rest = path.strip_prefix("/api/v10/channels/")?;
    let (id, tail) = rest.split_once('/')?;
    (tail == "messages").then(|| id.parse().ok())?
}

#[test]
fn a_guild_with_every_channel_kind_is_archived_exactly() {
    let h = full();
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    let expected = h.expected_readable();
    assert!(expected.len() > 1_000);
    assert_same_rows(&h.archived(), &expected);

    // Threads of every kind made it in.
    let state = h.sim.state();
    let threads: BTreeSet<i64> = state.thread_ids().iter().map(|t| *t as i64).collect();
    let archived_threads: BTreeSet<i64> = h
        .archived()
        .values()
        .map(|r| r.channel_id)
        .filter(|c| threads.contains(c))
        .collect();
    for kind in [10, 11, 12] {
        assert!(
            archived_threads
                .iter()
                .any(|t| state.channel_kind(*t as u64) == Some(kind)),
            "a thread of type {kind} was archived"
        );
    }

    // No message request for a category, a forum or media channel, or anything unreadable.
    let readable: BTreeSet<u64> = state.readable_channels().into_iter().collect();
    let log = state.request_log();
    for r in &log {
        if let Some(channel) = messages_channel(&r.path) {
            assert!(
                readable.contains(&channel),
                "asked for messages of unreadable channel {channel} (kind {:?}): {r:?}",
                state.channel_kind(channel)
            );
        }
    }
    // Each readable channel's first page was asked for exactly once: threads seen in two
    // listings were de-duplicated.
    let mut first_pages = std::collections::BTreeMap::new();
    for r in &log {
        if let Some(channel) = messages_channel(&r.path) {
            if r.query.starts_with("after=1&") {
                *first_pages.entry(channel).or_insert(0) += 1;
            }
        }
    }
    assert!(first_pages.values().all(|n| *n == 1), "{first_pages:?}");

    // Unreadable channels are reported with the permission they lack.
    let reasons: Vec<String> = report
        .channels
        .values()
        .filter_map(|c| match &c.status {
            ChannelStatus::Skipped(why) => Some(why.clone()),
            _ => None,
        })
        .collect();
    for lacking in ["View Channel", "Read Message History", "Connect"] {
        assert!(
            reasons.iter().any(|r| r.contains(lacking)),
            "a channel skipped for {lacking}: {reasons:?}"
        );
    }
}

#[test]
fn an_unchanged_guild_is_rechecked_with_listing_requests_only() {
    let h = full();
    let first = h.run(h.settings(), RunOptions::default());
    assert_eq!(first.exit_code, 0);
    let before = h.requests().len();
    let second = h.run(h.settings(), RunOptions::default());
    assert_eq!(second.exit_code, 0);
    let again: Vec<String> = h.requests()[before..].to_vec();
    assert!(
        again.iter().all(|r| !r.contains("/messages?")),
        "{again:#?}"
    );
    assert_eq!(second.totals.successfully_loaded, 0);
    eprintln!(
        "requests: first run {}, unchanged second run {}",
        before,
        again.len()
    );
}

#[test]
fn a_thread_archived_between_two_listings_is_fetched_once() {
    let h = full();
    let state = h.sim.state();
    let moving = state
        .channel_id_by_name("moving-soon")
        .expect("the preset has it");
    state.archive_after_active_listing(moving);
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0);
    let pages = h
        .requests()
        .iter()
        .filter(|r| r.starts_with(&format!("/api/v10/channels/{moving}/messages?after=1&")))
        .count();
    assert_eq!(pages, 1);
    assert_same_rows(&h.archived(), &h.expected_readable());
}

#[test]
fn no_threads_means_no_thread_requests() {
    let h = full();
    let mut settings = h.settings();
    settings.fetch.include_threads = false;
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0);
    let threads: BTreeSet<u64> = h.sim.state().thread_ids().into_iter().collect();
    for r in h.requests() {
        assert!(!r.contains("/threads"), "{r}");
        assert!(
            messages_channel(r.split('?').next().unwrap()).is_none_or(|c| !threads.contains(&c)),
            "{r}"
        );
    }
}

#[test]
fn a_channel_deleted_mid_run_is_skipped_and_the_rest_completes() {
    let h = Harness::small();
    let doomed = h.channel_id("three-thousand");
    h.sim.state().delete_channel_after(doomed, 3);
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert!(matches!(
        &report.channels[&doomed].status,
        ChannelStatus::Skipped(why) if why.contains("unknown channel")
    ));
    let others: Vec<u64> = h
        .readable_message_channels()
        .into_iter()
        .filter(|c| *c != doomed)
        .collect();
    let expected = h.expected_in(&others, &BTreeSet::new());
    let archived: std::collections::BTreeMap<_, _> = h
        .archived()
        .into_iter()
        .filter(|(_, r)| r.channel_id != doomed as i64)
        .collect();
    assert_same_rows(&archived, &expected);
}

#[test]
fn a_channel_failing_repeatedly_is_restarted_and_completes() {
    let h = Harness::small();
    let flaky = h.channel_id("two-fifty");
    h.sim.state().set_faults(FaultSpec {
        fail_first: vec![(flaky, 5)],
        ..FaultSpec::default()
    });
    let mut settings = h.settings();
    settings.rate.max_retries = 1;
    settings.fetch.max_restarts = 3;
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    let stats = &report.channels[&flaky].stats;
    assert!(stats.restarts >= 2, "{stats:?}");
    assert!(matches!(
        report.channels[&flaky].status,
        ChannelStatus::Finished
    ));
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
}

/// A fetcher restarted mid-channel resumes from what this run committed: that is not a
/// channel "resumed from checkpoint" (an earlier run's work), whatever the restarts.
#[test]
fn restarts_mid_channel_are_not_counted_as_resumed_channels() {
    let h = Harness::new(SimConfig {
        guild: GuildSpec::uniform(1, 10_000),
        latency: Duration::from_millis(20),
        ..SimConfig::default()
    });
    let channel = h.readable_message_channels()[0];
    let mut settings = h.settings();
    settings.rate.max_retries = 0;
    settings.rate.backoff_cap = Duration::from_millis(10);
    settings.fetch.max_restarts = 5;
    let report = std::thread::scope(|scope| {
        let run = scope.spawn(|| h.run(settings, RunOptions::default()));
        // Once two pages are in, the next two requests fail: two restarts mid-channel.
        let page = |r: &discord_archiver::simulator::LoggedRequest| {
            r.status == 200 && messages_channel(&r.path) == Some(channel)
        };
        assert!(
            await_requests(&h, 2, page, || !run.is_finished()),
            "the channel outlasts two pages (100, 20 ms each)"
        );
        h.sim.state().set_faults(FaultSpec {
            fail_first: vec![(channel, 2)],
            ..FaultSpec::default()
        });
        run.join().unwrap()
    });
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
    let stats = &report.channels[&channel].stats;
    assert!(stats.restarts >= 1, "{stats:?}");
    assert_eq!(stats.resumed_from_checkpoint, 0, "{stats:?}");
    assert_eq!(report.totals.resumed_from_checkpoint, 0);
}

#[test]
fn a_channel_failing_for_good_exits_1_and_the_others_complete() {
    let h = Harness::small();
    let broken = h.channel_id("two-fifty");
    h.sim.state().set_faults(FaultSpec {
        fail_first: vec![(broken, 1_000)],
        ..FaultSpec::default()
    });
    let mut settings = h.settings();
    settings.rate.max_retries = 1;
    settings.fetch.max_restarts = 2;
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 1);
    assert!(matches!(
        report.channels[&broken].status,
        ChannelStatus::Failed(_)
    ));
    assert_eq!(report.channels[&broken].stats.restarts, 2);
    let finished = report
        .channels
        .values()
        .filter(|c| matches!(c.status, ChannelStatus::Finished))
        .count();
    assert_eq!(finished, h.readable_message_channels().len() - 1);
}

#[test]
fn a_panicking_fetcher_is_restarted_and_the_run_completes() {
    let h = Harness::small();
    let channel = h.channel_id("two-fifty");
    let args = h.archive_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let panic = format!("{channel}:2");
    let out = h.bin_env(
        &args,
        &[
            ("DISCORD_TOKEN", TOKEN),
            ("DISCORD_ARCHIVER_TEST_PANIC", &panic),
        ],
    );
    out.assert_exit(0, "two panics, then success");
    out.assert_says("injected fetcher panic");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));
}

#[test]
fn sigterm_saves_what_was_fetched_and_a_rerun_completes_the_archive() {
    let h = Harness::new(SimConfig {
        guild: GuildSpec::test_small(),
        latency: Duration::from_millis(30),
        ..SimConfig::default()
    });
    let mut args = h.archive_args();
    args.extend(["--concurrency".into(), "2".into()]);
    let child = h.command(&args).spawn(&h.dir.path().join("sigterm"));
    // Wait until something is committed, then ask it to stop.
    wait_until("a commit", Duration::from_secs(120), || {
        committed_messages(&h) > 0
    });
    child.signal(SIGTERM);
    let out = child.wait(Duration::from_secs(120));
    out.assert_exit(130, "SIGTERM");
    let partial = h.archived();
    assert!(!partial.is_empty());
    let expected = h.expected(&BTreeSet::new());
    assert!(partial.len() < expected.len(), "stopped before the end");
    let out = h.bin(&args.iter().map(String::as_str).collect::<Vec<_>>());
    out.assert_exit(0, "re-run");
    assert_same_rows(&h.archived(), &expected);
}

/// Messages committed so far, read without disturbing the writer (0 until the schema exists).
fn committed_messages(h: &Harness) -> i64 {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    if !h.db.exists() {
        return 0;
    }
    let Ok(mut conn) = SqliteConnection::establish(h.db.to_str().unwrap()) else {
        return 0;
    };
    diesel::sql_query("SELECT COUNT(*) AS n FROM messages")
        .get_result::<Count>(&mut conn)
        .map_or(0, |c| c.n)
}

const SIGTERM: i32 = 15;

/// Without Read Message History Discord answers `200 []`: a channel asked for by ID, whose
/// permissions discovery does not check, must be reported and skipped, not recorded as archived
/// up to its listed newest message (a later run with the permission would then skip its whole
/// history).
#[test]
fn a_channel_without_history_access_is_skipped_not_claimed() {
    let h = full();
    let channel = h.channel_id("no-history");
    let mut settings = h.settings();
    settings.guilds.clear();
    settings.channels = vec![channel];
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert!(
        matches!(
            &report.channels[&channel].status,
            ChannelStatus::Skipped(why) if why.contains("Read Message History")
        ),
        "{:?}",
        report.channels[&channel].status
    );
    let claimed = h
        .checkpoints()
        .get(&(channel as i64))
        .map(|c| (c.last_message_id, c.complete));
    assert!(
        matches!(claimed, None | Some((0, false))),
        "nothing claimed: {claimed:?}"
    );
}

/// A SIGTERM while channels are still being discovered (a big guild takes a while) ends the run
/// the same way as during fetching: exit 130, the run recorded as interrupted, nothing fetched.
#[test]
fn sigterm_during_discovery_ends_the_run_as_interrupted() {
    use diesel::prelude::*;
    let h = Harness::new(SimConfig {
        guild: GuildSpec::full(),
        latency: Duration::from_millis(300),
        ..SimConfig::default()
    });
    let mut child = h
        .command(&h.archive_args())
        .spawn(&h.dir.path().join("sigterm"));
    // Past the token check: a listing request means discovery has begun.
    let listing = |r: &LoggedRequest| r.path.contains("/guilds/");
    assert!(
        await_requests(&h, 1, listing, || child.running()),
        "the run ended before discovery"
    );
    child.signal(SIGTERM);
    let out = child.wait(Duration::from_secs(120));
    out.assert_exit(130, "SIGTERM during discovery");
    assert!(
        !h.requests().iter().any(|r| r.contains("/messages")),
        "nothing fetched: {:?}",
        h.requests()
    );
    #[derive(QueryableByName, Debug)]
    struct Run {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
        exit_code: Option<i32>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        ended_at: Option<String>,
    }
    let runs: Vec<Run> = diesel::sql_query("SELECT exit_code, ended_at FROM runs")
        .load(&mut h.conn())
        .unwrap();
    assert!(
        matches!(
            runs.as_slice(),
            [Run {
                exit_code: Some(130),
                ended_at: Some(_)
            }]
        ),
        "{runs:?}"
    );
}

/// One parent's archived-thread listing failing after its retries costs that listing, not the
/// whole guild: every other channel is archived, the run says what it missed, and exits 1.
#[test]
fn a_failing_thread_listing_costs_that_listing_not_the_guild() {
    let h = full();
    let general = h.channel_id("general");
    h.sim.state().set_faults(FaultSpec {
        fail_thread_listings: vec![general],
        ..FaultSpec::default()
    });
    let mut settings = h.settings();
    settings.rate.max_retries = 1;
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 1, "{report:#?}");
    assert!(
        report.incomplete.len() == 1 && report.incomplete[0].contains("general"),
        "{:?}",
        report.incomplete
    );
    let archived = h.archived();
    let expected = h.expected_readable();
    let missing: BTreeSet<i64> = expected
        .iter()
        .filter(|(id, _)| !archived.contains_key(id))
        .map(|(_, r)| r.channel_id)
        .collect();
    assert!(
        !missing.is_empty(),
        "general's archived threads were missed"
    );
    for channel in &missing {
        assert_eq!(
            h.sim.state().thread_archived(*channel as u64),
            Some(true),
            "only archived threads may be missing, not channel {channel}"
        );
    }
    assert!(archived.iter().all(|(id, r)| expected.get(id) == Some(r)));
}

/// Channels named by ID whose kind holds no messages of their own are not fetched: a category
/// is reported, a forum stands for its posts; and a channel named by ID is asked again even if
/// it answered 403 within the last day.
#[test]
fn channels_named_by_id_skip_categories_expand_forums_and_are_always_asked() {
    let h = full();
    let (category, forum, staff) = (
        h.channel_id("Information"),
        h.channel_id("forum"),
        h.channel_id("staff"),
    );
    let mut settings = h.settings();
    settings.guilds.clear();
    settings.channels = vec![category, forum];
    let report = h.run(settings.clone(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    for (id, needle) in [(category, "category"), (forum, "forum")] {
        assert!(
            matches!(&report.channels[&id].status, ChannelStatus::Skipped(why) if why.contains(needle)),
            "{:?}",
            report.channels[&id].status
        );
    }
    for id in [category, forum] {
        assert!(
            !h.requests()
                .iter()
                .any(|r| r.contains(&format!("/channels/{id}/messages"))),
            "no messages asked of {id}"
        );
    }
    // The forum stands for its posts, active and archived: they are archived.
    let posts: Vec<u64> = (1..=3)
        .map(|k| format!("forum-post-{k}"))
        .chain((1..=4).map(|k| format!("forum-old-{k}")))
        .map(|name| h.channel_id(&name))
        .collect();
    let expected = h.expected_in(&posts, &BTreeSet::new());
    assert!(!expected.is_empty());
    assert_same_rows(&h.archived(), &expected);

    // `staff` is hidden from the bot: a 403 when its messages are asked for.
    settings.channels = vec![staff];
    let asked = |h: &Harness| {
        h.requests()
            .iter()
            .filter(|r| r.contains(&format!("/channels/{staff}")))
            .count()
    };
    h.run(settings.clone(), RunOptions::default());
    let first = asked(&h);
    assert!(first > 0);
    let report = h.run(settings, RunOptions::default());
    assert!(matches!(
        report.channels[&staff].status,
        ChannelStatus::Skipped(_)
    ));
    assert!(
        asked(&h) > first,
        "asked again, although it answered 403 just now"
    );
}

/// When the bot's permissions cannot be computed (its member object is refused), Manage
/// Threads is assumed and the private archived listing asked; Discord refusing it, the private
/// threads the bot joined are listed instead, not lost.
#[test]
fn joined_private_threads_are_found_when_permissions_are_unknown() {
    let h = full();
    h.sim.state().set_faults(FaultSpec {
        refuse_paths: vec!["/members/".into()],
        ..FaultSpec::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert!(
        h.requests().iter().any(|r| r.contains("/members/")),
        "the member object was asked for, and refused"
    );
    let joined = h.channel_id("dev-joined");
    let archived = h.archived();
    let expected = h.expected_in(&[joined], &BTreeSet::new());
    assert!(!expected.is_empty());
    assert!(
        expected.keys().all(|id| archived.contains_key(id)),
        "the joined private thread is archived"
    );
}

/// A Discord stand-in or proxy that serves neither `GET /users/@me` nor the guild object
/// (answering 404 in Discord's JSON, or in plain text, whose status twilight does not report):
/// neither is needed to archive, and neither is retried as if it were a passing 502. The token
/// is proven by a request that is served, and with the bot's permissions unknown every channel
/// is asked; the archive is still exactly the readable history.
fn archive_without_the_optional_lookups(plain: bool) {
    let h = full();
    let guild = h.sim.state().guild_id();
    h.sim.state().set_faults(FaultSpec {
        unserved_paths: vec!["/users/@me".into(), format!("/guilds/{guild}")],
        unserved_plain: plain,
        ..FaultSpec::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    let requests = h.requests();
    for path in [
        "/api/v10/users/@me?".to_owned(),
        format!("/api/v10/guilds/{guild}?"),
    ] {
        let asked = requests.iter().filter(|r| r.starts_with(&path)).count();
        assert_eq!(asked, 1, "{path} asked {asked} times, not retried");
    }
    assert_same_rows(&h.archived(), &h.expected_readable());
}

#[test]
fn a_server_without_the_optional_lookups_still_archives_the_guild() {
    archive_without_the_optional_lookups(false);
}

#[test]
fn unserved_lookups_answered_in_plain_text_are_asked_once() {
    archive_without_the_optional_lookups(true);
}

/// Without the permission math, a channel without Read Message History is found by its
/// empty answer (`200 []`) and skipped. Unlike a 403 or 404, asking again costs no invalid
/// request, and the permission may be granted any time: the next run asks again, not a day
/// later.
#[test]
fn a_channel_skipped_for_an_empty_history_is_asked_again_next_run() {
    let h = full();
    let guild = h.sim.state().guild_id();
    let channel = h.channel_id("no-history");
    h.sim.state().set_faults(FaultSpec {
        unserved_paths: vec!["/users/@me".into(), format!("/guilds/{guild}")],
        ..FaultSpec::default()
    });
    for run in 0..2 {
        let report = h.run(h.settings(), RunOptions::default());
        assert_eq!(report.exit_code, 0, "{report:#?}");
        assert!(
            matches!(
                &report.channels[&channel].status,
                ChannelStatus::Skipped(why) if why.contains("Read Message History") && !why.contains("day later")
            ),
            "run {run}: {:?}",
            report.channels[&channel].status
        );
    }
    let path = format!("/api/v10/channels/{channel}/messages?");
    let asked = h.requests().iter().filter(|r| r.starts_with(&path)).count();
    assert_eq!(asked, 2, "asked on each run");
}

/// Discord lists a guild's roles in the guild object and at `/guilds/{id}/roles`: without the
/// first, the second keeps the permission math, so a hidden channel is not even asked.
#[test]
fn the_roles_route_stands_in_for_the_guild_object() {
    let h = full();
    let guild = h.sim.state().guild_id();
    let staff = h.channel_id("staff");
    h.sim.state().set_faults(FaultSpec {
        unserved_paths: vec![format!("/guilds/{guild}")],
        ..FaultSpec::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    let requests = h.requests();
    assert!(requests
        .iter()
        .any(|r| r.starts_with(&format!("/api/v10/guilds/{guild}/roles?"))));
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with(&format!("/api/v10/channels/{staff}/messages"))),
        "the hidden channel was asked"
    );
    assert!(matches!(
        &report.channels[&staff].status,
        ChannelStatus::Skipped(_)
    ));
    assert_same_rows(&h.archived(), &h.expected_readable());
}

/// Channels named by ID when `GET /channels/{id}` is not served: each is fetched as a text
/// channel, and the messages route itself says which one does not exist.
#[test]
fn named_channels_are_fetched_when_the_channel_route_is_not_served() {
    let h = full();
    let general = h.channel_id("general");
    let missing = 4_242_424_242_424_242_424;
    h.sim.state().set_faults(FaultSpec {
        unserved_paths: vec![
            format!("/channels/{general}"),
            format!("/channels/{missing}"),
        ],
        ..FaultSpec::default()
    });
    let mut settings = h.settings();
    settings.guilds.clear();
    settings.channels = vec![general, missing];
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert!(matches!(
        &report.channels[&missing].status,
        ChannelStatus::Skipped(_)
    ));
    let expected = h.expected_in(&[general], &BTreeSet::new());
    assert!(!expected.is_empty());
    assert_same_rows(&h.archived(), &expected);
}

/// `--no-threads` leaves out every thread, a named forum's posts included.
#[test]
fn no_threads_leaves_out_a_named_forums_posts() {
    let h = full();
    let forum = h.channel_id("forum");
    let mut settings = h.settings();
    settings.guilds.clear();
    settings.channels = vec![forum];
    settings.fetch.include_threads = false;
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    assert!(
        matches!(&report.channels[&forum].status, ChannelStatus::Skipped(why) if why.contains("--no-threads")),
        "{:?}",
        report.channels[&forum].status
    );
    assert!(h.archived().is_empty());
    assert!(
        !h.requests().iter().any(|r| r.contains("/threads/")),
        "no thread listing asked"
    );
}

/// A text channel and, for each `(archive time in Unix ms, count)`, that many public threads
/// archived at exactly that time (named `t{time}-{i}`), archived in one run.
fn run_with_tied_archive_times(groups: &[(u64, usize)]) -> Harness {
    use discord_archiver::simulator::{kind, ChannelSpec};
    let mut channels = vec![ChannelSpec::text("general", 3)];
    for &(at, count) in groups {
        for i in 0..count {
            let mut thread =
                ChannelSpec::thread(&format!("t{at}-{i}"), kind::PUBLIC_THREAD, 0, 4).archived();
            thread.thread.archived_at_ms = Some(at);
            channels.push(thread);
        }
    }
    let h = Harness::new(SimConfig {
        guild: GuildSpec {
            channels,
            ..GuildSpec::test_small()
        },
        ..SimConfig::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    h
}

/// Archived threads that share an archive time (a bulk archiving, a coarse clock), cut by a
/// page of the listing: its `before` is exclusive, so asking from the last one's time would
/// pass over the ties the page had no room for.
#[test]
fn archived_threads_sharing_an_archive_time_are_all_found() {
    let h = run_with_tied_archive_times(&[
        (1_700_000_000_000, 60),
        (1_700_000_100_000, 60),
        (1_700_000_200_000, 10),
    ]);
    let expected = h.expected_readable();
    let threads: BTreeSet<i64> = expected.values().map(|r| r.channel_id).collect();
    assert!(threads.len() > 120, "most threads have a stored message");
    assert_same_rows(&h.archived(), &expected);
}

/// More threads share one archive time than a page holds: those past the page cannot be listed
/// at all (`before` goes by time), but the older threads still are.
#[test]
fn threads_archived_before_a_page_of_ties_are_still_found() {
    let older = 1_700_000_000_000;
    let h = run_with_tied_archive_times(&[(older, 20), (1_700_000_100_000, 130)]);
    let older_threads: Vec<u64> = (0..20)
        .map(|i| h.channel_id(&format!("t{older}-{i}")))
        .collect();
    let expected = h.expected_in(&older_threads, &BTreeSet::new());
    assert!(!expected.is_empty());
    let archived = h.archived();
    assert!(
        expected.keys().all(|id| archived.contains_key(id)),
        "every older thread is archived"
    );
}

/// Channels page while discovery goes on: a guild's text channels are handed over as soon as
/// its channel listing is read, so the first page of one is asked before discovery's last
/// request (the archived-thread listings of every channel, which take a while under the
/// global limit).
#[test]
fn text_channels_start_paging_before_discovery_ends() {
    let h = Harness::new(SimConfig {
        guild: GuildSpec::skewed(20, 3_000),
        ..SimConfig::default()
    });
    let mut settings = h.settings();
    // 40 listings at 20 a second: two seconds of discovery after the channel listing.
    settings.rate.global_per_second = 20.0;
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    let log = h.requests();
    let discovery = |r: &String| r.contains("/threads") || r.starts_with("/api/v10/guilds/");
    let last_listing = log.iter().rposition(discovery).expect("discovery asked");
    let first_page = log
        .iter()
        .position(|r| r.contains("/messages"))
        .expect("pages asked");
    assert!(
        first_page < last_listing,
        "the first page (request {first_page}) waited for discovery (last request {last_listing}): {log:#?}"
    );
    assert_same_rows(&h.archived(), &h.expected_readable());
}
