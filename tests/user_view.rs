//! What the user sees: progress events and their display, `status`, `export`, the summary
//! and the Message Content intent warning.

use crate::util::*;
use actix::prelude::*;
use discord_archiver::actors::messages::ProgressEvent;
use discord_archiver::app::{self, RunOptions};
use discord_archiver::config::{Settings, Token};
use discord_archiver::export::{self, ExportFilter};
use discord_archiver::progress::{Progress, Terminal, View};
use discord_archiver::simulator::{GuildSpec, SimConfig};
use discord_archiver::stats::{ChannelStatus, RunReport};
use indicatif::ProgressDrawTarget;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// A subscriber that keeps every event it is sent.
struct Collect(Arc<Mutex<Vec<ProgressEvent>>>);

impl Actor for Collect {
    type Context = Context<Self>;
}

impl Handler<ProgressEvent> for Collect {
    type Result = ();

    fn handle(&mut self, ev: ProgressEvent, _: &mut Self::Context) {
        self.0.lock().unwrap().push(ev);
    }
}

/// Runs an archive in-process with a collecting subscriber and, optionally, a `Progress`.
fn run_observed(
    settings: Settings,
    progress: Option<&Progress>,
) -> (RunReport, Vec<ProgressEvent>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let report = actix::System::new().block_on(async {
        let mut options = RunOptions::default();
        options
            .progress
            .push(Collect(events.clone()).start().recipient());
        if let Some(p) = progress {
            options.progress.push(p.recipient());
        }
        app::archive(settings, Token::new(TOKEN), options)
            .await
            .expect("the run starts")
    });
    if let Some(p) = progress {
        p.finish();
    }
    let events = events.lock().unwrap().clone();
    (report, events)
}

/// Removes ANSI escape sequences (CSI `ESC [ ... letter`), leaving the text.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn the_observer_receives_events_at_the_configured_interval() {
    let h = Harness::small();
    let mut settings = h.settings();
    settings.fetch.progress_interval = 40;
    let progress = Progress::with_view(
        View::Log,
        &Terminal::default(),
        ProgressDrawTarget::hidden(),
    );
    let (report, events) = run_observed(settings, Some(&progress));
    assert_eq!(report.exit_code, 0, "{report:#?}");

    let mut per_channel: BTreeMap<u64, Vec<&ProgressEvent>> = BTreeMap::new();
    for ev in &events {
        per_channel.entry(ev.channel_id).or_default().push(ev);
    }
    for (id, channel) in &report.channels {
        if !matches!(channel.status, ChannelStatus::Finished) {
            assert!(
                !per_channel.contains_key(id),
                "skipped channels send nothing"
            );
            continue;
        }
        let evs = &per_channel[id];
        let (last, steps) = evs.split_last().unwrap();
        // Every `progress_interval` messages, in order, then one at the end.
        let want: Vec<u64> = (1..=steps.len() as u64).map(|k| k * 40).collect();
        let got: Vec<u64> = steps.iter().map(|e| e.processed).collect();
        assert_eq!(got, want, "channel {id}");
        assert!(steps.iter().all(|e| !e.done), "channel {id}");
        assert!(last.done, "channel {id} ends with a done event");
        assert_eq!(
            last.processed, channel.stats.total_processed,
            "channel {id}"
        );
        assert_eq!(
            steps.len() as u64,
            channel.stats.total_processed / 40,
            "channel {id}: one event per 40 messages"
        );
        let truth = h.sim.state().truth(*id);
        if let Some((newest, _)) = truth.last() {
            assert_eq!(
                last.cursor, *newest,
                "channel {id}: the cursor reached the end"
            );
            assert!(
                last.newest.is_some(),
                "channel {id}: the listing's newest is passed on"
            );
        }
        assert!(
            evs.windows(2).all(|w| w[0].stored <= w[1].stored),
            "channel {id}: counts only grow"
        );
    }
    // The binary's observer saw the same run: every message, counted once.
    assert_eq!(progress.received(), report.totals.total_processed);
}

#[test]
fn the_bars_view_follows_a_real_run() {
    // Drawn to a hidden target: every code path of the bars view, against real events.
    let h = Harness::small();
    let mut settings = h.settings();
    settings.fetch.progress_interval = 10;
    let terminal = Terminal::default();
    let progress = Progress::with_view(View::Bars, &terminal, ProgressDrawTarget::hidden());
    let (report, _) = run_observed(settings, Some(&progress));
    assert_eq!(report.exit_code, 0);
    assert_eq!(progress.received(), report.totals.total_processed);
}

#[test]
fn status_json_and_export_round_trip_the_archive() {
    let h = Harness::small();
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0);
    let archived = h.archived();
    let db = h.db.display().to_string();

    // status --json: one row per channel, agreeing with the rows and the simulator.
    let out = h.bin(&["status", "--db", &db, "--json"]);
    out.assert_exit(0, "status --json");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.output.stdout).unwrap();
    let by_id: BTreeMap<u64, &serde_json::Value> = rows
        .iter()
        .map(|r| (r["channel_id"].as_u64().unwrap(), r))
        .collect();
    for (name, _) in h.spec.channels.iter().map(|c| (c.name.as_str(), c.kind)) {
        let id = h.channel_id(name);
        let row = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("status lists #{name}"));
        let mine: Vec<&Row> = archived
            .values()
            .filter(|r| r.channel_id == id as i64)
            .collect();
        assert_eq!(row["stored_messages"], mine.len(), "#{name}");
        let created = |r: &Row| -> String {
            let v: serde_json::Value = serde_json::from_str(&r.raw_json).unwrap();
            v["timestamp"].as_str().unwrap().to_owned()
        };
        let oldest = mine.first().map(|r| created(r));
        let newest = mine.last().map(|r| created(r));
        assert_eq!(
            row["oldest_message_at"].as_str().map(str::to_owned),
            oldest,
            "#{name}"
        );
        assert_eq!(
            row["newest_message_at"].as_str().map(str::to_owned),
            newest,
            "#{name}"
        );
        let state = row["state"].as_str().unwrap();
        match name {
            "archive" => {
                assert_eq!(state, "no_messages", "a category holds no messages");
                assert_eq!(row["kind_name"], "category");
            }
            "secret" => {
                // Skipped by permission math before any request: discovery does not record
                // that reason in the archive (yet), so status may only know it was not fetched.
                assert!(matches!(state, "skipped" | "not_fetched"), "{state}");
                if state == "skipped" {
                    assert!(row["skip_reason"].is_string());
                }
            }
            _ => {
                assert_eq!(state, "complete", "#{name}");
                assert!(row["last_fetch"].is_string(), "#{name}");
            }
        }
    }

    // The table says the same in words.
    let out = h.bin(&["status", "--db", &db]);
    out.assert_exit(0, "status");
    let table = out.stdout();
    for needle in [
        "no messages of its own (category)",
        "complete",
        "last run: `archive`",
    ] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }

    // export: every stored message once, raw JSON as stored, oldest first per channel.
    let exported = h.dir.path().join("raw.jsonl");
    let out = h.bin(&[
        "export",
        "--db",
        &db,
        "--out",
        &exported.display().to_string(),
    ]);
    out.assert_exit(0, "export");
    let lines: Vec<String> = std::fs::read_to_string(&exported)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut expected: Vec<&Row> = archived.values().collect();
    expected.sort_by_key(|r| (r.channel_id, r.id));
    let expected_raw: Vec<&str> = expected.iter().map(|r| r.raw_json.as_str()).collect();
    assert_eq!(lines, expected_raw, "raw export is the archive, in order");

    // --normalized: the same messages, flat, with the archive's columns.
    let out = h.bin(&["export", "--db", &db, "--normalized"]);
    out.assert_exit(0, "export --normalized");
    let normalized: Vec<serde_json::Value> = String::from_utf8(out.output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(normalized.len(), expected.len());
    for (n, row) in normalized.iter().zip(&expected) {
        let raw: serde_json::Value = serde_json::from_str(&row.raw_json).unwrap();
        assert_eq!(n["id"], raw["id"]);
        assert_eq!(n["channel_id"], row.channel_id.to_string());
        assert_eq!(n["content"], row.content.as_str());
        assert_eq!(n["author_id"], raw["author"]["id"]);
        assert_eq!(n["created_at"], raw["timestamp"]);
        assert_eq!(n["message_type"], raw["type"]);
        assert_eq!(n["guild_id"], h.sim.state().guild_id().to_string());
        let keys: BTreeSet<&str> = n.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "id",
                "channel_id",
                "guild_id",
                "author_id",
                "author_name",
                "author_is_bot",
                "content",
                "created_at",
                "edited_at",
                "message_type",
                "reference_message_id",
            ])
        );
    }

    // Filters: one channel, after a message in its middle; the library iterator agrees.
    let channel = h.channel_id("three-thousand");
    let mine: Vec<&Row> = expected
        .iter()
        .copied()
        .filter(|r| r.channel_id == channel as i64)
        .collect();
    let middle = mine[mine.len() / 2].id;
    let out = h.bin(&[
        "export",
        "--db",
        &db,
        "--channel",
        &channel.to_string(),
        "--after",
        &middle.to_string(),
    ]);
    out.assert_exit(0, "export --channel --after");
    let want: Vec<&str> = mine
        .iter()
        .filter(|r| r.id > middle)
        .map(|r| r.raw_json.as_str())
        .collect();
    let got = String::from_utf8(out.output.stdout).unwrap();
    assert_eq!(got.lines().collect::<Vec<_>>(), want);

    let mut conn = discord_archiver::storage::open_ro(&h.db).unwrap();
    let filter = ExportFilter {
        channels: vec![channel],
        after: Some(middle as u64),
        before: None,
    };
    let via_library: Vec<String> = export::messages(&mut conn, &filter)
        .unwrap()
        .map(|m| m.unwrap().raw_json)
        .collect();
    assert_eq!(via_library, want);
}

#[test]
fn the_intent_warning_stays_quiet_on_normal_guilds() {
    // The small test guild through the binary: the summary has no warning.
    let h = Harness::small();
    let args = h.archive_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.bin(&args);
    out.assert_exit(0, "archive");
    let all = out.text();
    assert!(!all.contains("Message Content"), "{all}");
    // The summary table is there, with its totals.
    assert!(all.contains("total (") && all.contains("429s"), "{all}");

    // The demo guild, in-process: a realistic mix of bots, empty and attachment-only posts.
    let h = Harness::new(SimConfig {
        guild: GuildSpec::demo(),
        ..SimConfig::default()
    });
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0);
    let t = &report.totals;
    assert!(t.total_processed > 40_000);
    assert!(
        !t.content_intent_missing(),
        "{} of {} look intent-less",
        t.content_missing,
        t.from_people()
    );
    assert!(discord_archiver::report::content_intent_warning(t).is_none());
    assert!(!discord_archiver::report::summary(&report).contains("WARNING"));
}

#[test]
fn the_intent_warning_fires_on_an_intentless_guild() {
    // Without the Message Content intent, Discord empties everyone's messages but the bot's.
    let h = Harness::new(SimConfig {
        guild: GuildSpec::test_small(),
        message_content_intent: false,
        ..SimConfig::default()
    });
    let args = h.archive_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.bin(&args);
    out.assert_exit(0, "archive");
    let all = out.text();
    assert!(all.contains("Message Content"), "{all}");
    assert!(
        all.contains("skip_empty"),
        "says what the filter did: {all}"
    );
}

#[test]
fn progress_bars_render_under_a_pseudo_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let h = Harness::small();
    let mut args = h.archive_args();
    // `auto` (the default) must pick bars on a terminal; slow enough to draw a few frames.
    args.truncate(args.len() - 2);
    args.extend(["--rate".into(), "25".into()]);
    let command = std::iter::once(bin_path().display().to_string())
        .chain(args.iter().cloned())
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    // A 120-column terminal (without a size, a pty reads as 80 columns).
    let command = format!("stty cols 120 rows 40 2>/dev/null; exec {command}");
    let out = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("DISCORD_TOKEN", TOKEN)
        .env("TERM", "xterm-256color")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script runs");
    let out = TestOutput::of(
        out,
        &format!("script -qfec {}", shell_quote(&command)),
        Some(&h.db),
    );
    let raw = out.stdout();
    out.assert_exit(0, "archive under a pty");
    assert!(raw.contains("\u{1b}["), "the bars redraw with escape codes");
    let screen = strip_ansi(&raw);
    let frame = screen
        .split(['\r', '\n'])
        .find(|l| l.contains("archiving [") && l.contains("msg/s"))
        .unwrap_or_else(|| panic!("no bar frame in:\n{screen}"));
    assert!(
        frame.contains('━') && frame.contains("channels:"),
        "{frame}"
    );
    assert!(
        screen.contains("#three-thousand") && screen.contains("% "),
        "a channel line: {screen}"
    );
    // The bars are cleared before the summary, which is printed in full.
    let summary = screen.split("channel ").last().unwrap();
    assert!(
        summary.contains("total (") && !summary.contains('━'),
        "{screen}"
    );

    // The same run without a terminal: log lines, no bars, no escape codes.
    let h = Harness::small();
    let mut args = h.archive_args();
    args.truncate(args.len() - 2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.bin_env(
        &args,
        &[("DISCORD_TOKEN", TOKEN), ("TERM", "xterm-256color")],
    );
    out.assert_exit(0, "archive without a terminal");
    let all = out.text();
    assert!(!all.contains('━') && !all.contains("\u{1b}["), "{all}");
    assert!(all.contains("messages received"), "{all}");
}

/// An archive that holds nothing yet, and an export of a channel it has never seen: both say
/// so plainly.
#[test]
fn an_empty_archive_and_an_unknown_channel_are_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    drop(discord_archiver::storage::open_rw(&db).unwrap());
    let db = db.to_str().unwrap();
    let out = run_bin(&["status", "--db", db], &[]);
    out.assert_exit(0, "status");
    let said = out.text();
    assert!(said.contains("0 channels, 0 messages"), "{said}");
    assert!(!said.contains("()"), "{said}");

    let out = run_bin(&["export", "--db", db, "--channel", "999"], &[]);
    out.assert_exit(0, "export");
    let said = out.text();
    assert!(
        said.contains("channel 999 is not in this archive"),
        "{said}"
    );
}
