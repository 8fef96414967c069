//! The real binary: exit codes, error messages, the demo, status and export.

use crate::util::*;
use std::collections::BTreeSet;

#[test]
fn archive_status_and_export_through_the_binary() {
    let h = Harness::small();
    let stats = h.dir.path().join("stats.json");
    let mut args = h.archive_args();
    args.extend(["--stats-json".into(), stats.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.bin(&args);
    out.assert_exit(0, "archive");
    assert_same_rows(&h.archived(), &h.expected(&BTreeSet::new()));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    for key in [
        "total_processed",
        "successfully_loaded",
        "skipped_bot_messages",
        "skipped_empty_messages",
        "skipped_blacklisted",
        "skipped_commands",
        "errors",
        "rate_limit_errors",
        "batches_saved",
        "resumed_from_checkpoint",
        "requests",
        "restarts",
    ] {
        assert!(
            json["totals"][key].is_u64(),
            "stats-json has totals.{key}: {json}"
        );
    }
    assert!(json["start_time"].is_string() && json["end_time"].is_string());
    // Per channel too (SPEC: statistics per channel and in total).
    let channels = json["channels"].as_object().unwrap();
    assert!(!channels.is_empty());
    for (id, c) in channels {
        assert!(
            c["start_time"].is_string() && c["end_time"].is_string(),
            "channel {id}: {c}"
        );
    }

    let db = h.db.display().to_string();
    let out = h.bin(&["status", "--db", &db]);
    out.assert_exit(0, "status");
    out.assert_says("complete");
    let out = h.bin(&["status", "--db", &db, "--json"]);
    out.assert_exit(0, "status --json");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.output.stdout).unwrap();
    let stored: i64 = rows
        .iter()
        .map(|r| r["stored_messages"].as_i64().unwrap())
        .sum();
    assert_eq!(stored as usize, h.archived().len());

    let exported = h.dir.path().join("out.jsonl");
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
    let archived = h.archived();
    assert_eq!(lines.len(), archived.len());
    let raws: BTreeSet<&str> = archived.values().map(|r| r.raw_json.as_str()).collect();
    assert!(lines.iter().all(|l| raws.contains(l.as_str())));
}

/// `status --json | head -1`: a reader that has closed its end wants nothing more. Every
/// command that prints ends as it would have, without a panic. The pipe's reading end is
/// closed before the command starts, so every write meets it closed.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let h = Harness::small();
    let archive = h.archive_args();
    let db = h.db.display().to_string();
    let demo_db = h.dir.path().join("demo.db").display().to_string();
    let runs: [(Vec<&str>, i32); 5] = [
        (archive.iter().map(String::as_str).collect(), 0),
        (vec!["status", "--db", &db, "--json"], 0),
        (vec!["status", "--db", &db], 0),
        (vec!["export", "--db", &db], 0),
        (vec!["demo", "--db", &demo_db, "--progress", "off"], 0),
    ];
    for (args, code) in runs {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = h.command(&args).stdout(writer.into()).run();
        out.assert_exit(code, "stdout closed");
        out.assert_never_says("panicked");
    }
}

#[test]
fn a_missing_token_is_a_usage_error() {
    let h = Harness::small();
    let args = h.archive_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.bin_env(&args, &[]);
    out.assert_exit(2, "no token");
    out.assert_says("DISCORD_TOKEN");
    assert!(!h.db.exists(), "nothing was created");
}

#[test]
fn a_rejected_token_stops_before_any_damage() {
    let h = Harness::small();
    let args = h.archive_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.bin_env(&args, &[("DISCORD_TOKEN", "not-the-token")]);
    out.assert_exit(2, "bad token");
    out.assert_says("401");
    assert!(!out.text().contains("not-the-token"));
    assert_eq!(h.requests().len(), 1, "only the token check was made");
    let left: Vec<_> = std::fs::read_dir(h.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "no new archive left behind: {left:?}");
}

/// A server that does not serve `GET /users/@me` (a stand-in, a proxy) answers 404 whatever
/// the token: the token is then proven by discovery's first request, still before anything
/// is recorded.
#[test]
fn a_rejected_token_stops_before_any_damage_without_the_token_check_route() {
    let h = Harness::small();
    h.sim
        .state()
        .set_faults(discord_archiver::simulator::FaultSpec {
            unserved_paths: vec!["/users/@me".into()],
            ..Default::default()
        });
    let args = h.archive_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.bin_env(&args, &[("DISCORD_TOKEN", "not-the-token")]);
    out.assert_exit(2, "bad token");
    out.assert_says("401");
    let left: Vec<_> = std::fs::read_dir(h.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "no new archive left behind: {left:?}");

    // An existing archive, and channels it already knows (so discovery asks nothing): the
    // token is still proven before anything is recorded, and the archive is left as it was.
    let channel = h.channel_id("ninety-nine").to_string();
    let db = h.db.to_str().unwrap();
    let url = h.sim.url();
    let named = [
        "archive",
        "--db",
        db,
        "--api-base",
        &url,
        "--channel",
        &channel,
    ];
    h.bin(&named).assert_exit(0, "first run");
    let before = std::fs::read(&h.db).unwrap();
    let asked = h.requests().len();
    let out = h.bin_env(&named, &[("DISCORD_TOKEN", "not-the-token")]);
    out.assert_exit(2, "bad token, known channel");
    assert_eq!(
        std::fs::read(&h.db).unwrap(),
        before,
        "the archive is unchanged"
    );
    assert_eq!(
        h.requests().len(),
        asked + 2,
        "the token check and one proof"
    );
}

/// An unknown guild is a usage error found before fetching: exit 2, and no new archive.
#[test]
fn an_unknown_guild_leaves_no_new_archive() {
    let h = Harness::small();
    let out = h.bin(&[
        "archive",
        "--db",
        h.db.to_str().unwrap(),
        "--api-base",
        &h.sim.url(),
        "--guild",
        "123456789012345678",
    ]);
    out.assert_exit(2, "unknown guild");
    out.assert_says("123456789012345678");
    assert!(!h.db.exists(), "no new archive left behind");
}

/// Output paths are checked before anything is fetched: a directory is not a file.
#[test]
fn a_directory_as_an_output_file_is_a_usage_error_up_front() {
    let h = Harness::small();
    let dir = h.dir.path().join("stats");
    std::fs::create_dir(&dir).unwrap();
    let mut args = h.archive_args();
    args.extend(["--stats-json".into(), dir.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.bin(&args);
    out.assert_exit(2, "--stats-json a directory");
    out.assert_says("--stats-json");
    assert!(h.requests().is_empty(), "nothing was asked");
    assert!(!h.db.exists());
}

/// Nothing listening at the API base: the run stops at the token check and says where it
/// looked and what to check.
#[test]
fn an_api_base_that_does_not_answer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let db = dir.path().join("a.db");
    let out = run_bin(
        &[
            "archive",
            "--channel",
            "1",
            "--api-base",
            &base,
            "--db",
            db.to_str().unwrap(),
        ],
        &[("DISCORD_TOKEN", "t"), ("MESSAGE_FETCH_MAX_RETRIES", "0")],
    );
    out.assert_exit(1, "nothing listening");
    let said = out.text();
    assert!(
        said.contains(&base) && said.contains("--api-base"),
        "{said}"
    );
    assert!(!db.exists(), "no new archive left behind");
}

#[test]
fn config_errors_name_the_key_and_line() {
    let h = Harness::small();
    let config = h.dir.path().join("archiver.toml");
    std::fs::write(
        &config,
        "database = \"a.db\"\n\n[fetch]\nbatch_size = 100\nbatch_sise = 5\n",
    )
    .unwrap();
    let out = h.bin(&[
        "archive",
        "--config",
        &config.display().to_string(),
        "--channel",
        "1",
    ]);
    out.assert_exit(2, "unknown key");
    let t = out.text();
    assert!(t.contains("batch_sise") && t.contains("line 5"), "{t}");

    std::fs::write(&config, "[fetch]\nbatch_size = 0\n").unwrap();
    let out = h.bin(&[
        "archive",
        "--config",
        &config.display().to_string(),
        "--channel",
        "1",
    ]);
    out.assert_exit(2, "impossible value");
    let t = out.text();
    assert!(t.contains("batch_size") && t.contains("line 2"), "{t}");
}

#[test]
fn demo_archives_and_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let db = db.display().to_string();
    let out = run_bin(&["demo", "--db", &db, "--progress", "log"], &[]);
    out.assert_exit(0, "demo");
    let first = out.text();
    assert!(first.contains("messages/s"), "{first}");
    let out = run_bin(&["demo", "--db", &db, "--progress", "log"], &[]);
    out.assert_exit(0, "demo again");
    let again = out.stdout();
    assert!(again.contains(" 0 stored"), "nothing new: {again}");
    out.assert_says("up to date");
}

#[test]
fn an_output_path_that_is_the_archive_is_refused_before_anything_is_written() {
    let h = Harness::small();
    let args = h.archive_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    h.bin(&args).assert_exit(0, "archive");
    let before = std::fs::read(&h.db).unwrap();
    let db = h.db.display().to_string();
    let wal = format!("{db}-wal");

    for out in [&db, &wal] {
        let export = h.bin(&["export", "--db", &db, "--out", out]);
        export.assert_exit(2, "export over the archive");
        export.assert_says("is the archive itself");

        let requests = h.requests().len();
        let mut run = args.clone();
        run.extend(["--stats-json", out]);
        let archive = h.bin(&run);
        archive.assert_exit(2, "stats over the archive");
        archive.assert_says("--stats-json");
        assert_eq!(h.requests().len(), requests, "refused before any request");
    }
    assert_eq!(
        std::fs::read(&h.db).unwrap(),
        before,
        "the archive is untouched"
    );
    h.bin(&["status", "--db", &db]).assert_exit(0, "status");

    let missing = h.dir.path().join("no-such-dir/stats.json");
    let mut run = args.clone();
    let missing = missing.display().to_string();
    run.extend(["--stats-json", &missing]);
    let out = h.bin(&run);
    out.assert_exit(2, "stats into a missing directory");
    out.assert_says("does not exist");
}
