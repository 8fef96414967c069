//! End to end: messages and channels this version cannot fully read never stop a channel or a
//! guild. Every readable message is stored byte for byte, the odd ones are kept verbatim in
//! `anomalies` and reported, forwards, polls and voice messages are archived by default, and
//! `status` says what happened to each channel.

use crate::util::*;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use discord_archiver::app::RunOptions;
use discord_archiver::config::SkipEmpty;
use discord_archiver::simulator::{ChannelSpec, FaultSpec, GuildSpec, SimConfig};
use discord_archiver::stats::ChannelStatus;
use std::collections::BTreeMap;

/// The channel of odd messages, listed as a text channel.
const ODD: u64 = 1_100_000_000_000_000_001;
/// A channel of a type this version does not know that answers like a text channel.
const FUTURE_TEXT: u64 = 1_100_000_000_000_000_002;
/// A channel of a type past 255 that does not answer the messages route.
const FUTURE_OTHER: u64 = 1_100_000_000_000_000_003;
/// Where the odd channel's messages start (IDs ascending from here).
const BASE: u64 = 1_200_000_000_000_000_000;

/// Every message type Discord documents (message.mdx), plus types it may add.
const TYPES: [i32; 44] = [
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    26,
    27,
    28,
    29,
    31,
    32,
    36,
    37,
    38,
    39,
    44,
    46,
    55,
    56,
    99,
    255,
    256,
    70_000,
    2_147_483_647,
];

fn author() -> &'static str {
    r#"{"id":"2","username":"ann","global_name":"Ann","discriminator":"0","avatar":null}"#
}

/// A message of `kind` as Discord shapes it (system types carry no text); `extra` adds or
/// replaces fields (a JSON object may not name one twice).
fn message(id: u64, kind: i32, content: &str, extra: &str) -> String {
    let base = |field: &str, value: &str| {
        if extra.contains(&format!(r#""{field}""#)) {
            String::new()
        } else {
            format!(r#","{field}":{value}"#)
        }
    };
    format!(
        r#"{{"id":"{id}","type":{kind},"content":"{content}","channel_id":"{ODD}","author":{a}{attachments},"mentions":[],"pinned":false,"tts":false,"timestamp":"2024-05-01T12:34:56.789000+00:00","edited_timestamp":null{flags}{extra}}}"#,
        a = author(),
        attachments = base("attachments", "[]"),
        flags = base("flags", "0"),
    )
}

fn kind_extra(kind: i32) -> &'static str {
    match kind {
        19 | 21 | 6 | 12 => r#","message_reference":{"type":0,"message_id":"5","channel_id":"9"}"#,
        20 | 23 => {
            r#","interaction_metadata":{"id":"7","type":2,"user":{"id":"2"},"name":"ping"},"application_id":"8""#
        }
        24 => r#","embeds":[{"type":"auto_moderation_message","description":"flagged"}]"#,
        46 => {
            r#","embeds":[{"type":"poll_result","fields":[{"name":"poll_question_text","value":"Lunch?"}]}]"#
        }
        _ => "",
    }
}

/// What the odd channel serves: `(position, raw JSON, what it is)`.
struct Served {
    /// Readable messages, stored as served.
    readable: Vec<(u64, String)>,
    /// Unstorable elements, kept in `anomalies` (with their ID as text when it has one).
    odd: Vec<(Option<String>, String)>,
    /// Everything in serving order.
    all: Vec<(u64, String)>,
}

fn served() -> Served {
    let mut readable = Vec::new();
    let mut odd = Vec::new();
    let mut all = Vec::new();
    let mut id = BASE;
    let mut next = || {
        id += 1_000;
        id
    };
    // Enough plain messages around the odd ones that paging takes several pages.
    for i in 0..60 {
        let id = next();
        readable.push((id, message(id, 0, &format!("plain {i}"), "")));
    }
    for kind in TYPES {
        let id = next();
        readable.push((id, message(id, kind, "", kind_extra(kind))));
    }
    let id = next();
    readable.push((id, message(id, 0, r"half \ud83d an emoji, and \udc00", "")));
    let id = next();
    readable.push((
        id,
        message(
            id,
            0,
            "",
            r#","message_reference":{"type":1,"message_id":"77","channel_id":"78"},"message_snapshots":[{"message":{"content":"forwarded words","type":0,"timestamp":"2024-04-01T00:00:00.000000+00:00","flags":0}}]"#,
        ),
    ));
    let id = next();
    readable.push((
        id,
        message(
            id,
            0,
            "",
            r#","poll":{"question":{"text":"Lunch?"},"answers":[{"answer_id":1,"poll_media":{"text":"Pizza"}},{"answer_id":2,"poll_media":{"text":"Soup"}}],"expiry":null,"allow_multiselect":false,"layout_type":1}"#,
        ),
    ));
    let id = next();
    readable.push((
        id,
        message(
            id,
            0,
            "",
            r#","attachments":[{"id":"9","filename":"voice-message.ogg","content_type":"audio/ogg","duration_secs":3.1,"waveform":"AAECAw=="}],"flags":8192"#,
        ),
    ));
    all.extend(readable.iter().cloned());
    // An author without an id, between good messages: its ID still moves the cursor.
    let id = next();
    let raw =
        format!(r#"{{"id":"{id}","type":0,"content":"who?","author":{{"username":"ghost"}}}}"#);
    odd.push((Some(id.to_string()), raw.clone()));
    all.push((id, raw));
    // No id at all: it cannot move the cursor, only be kept.
    let position = next();
    let raw = r#"{"type":0,"content":"no id","author":{"id":"2"}}"#.to_owned();
    odd.push((None, raw.clone()));
    all.push((position, raw));
    for _ in 0..3 {
        let id = next();
        readable.push((id, message(id, 0, "after the odd ones", "")));
        all.push((id, readable.last().unwrap().1.clone()));
    }
    // Two IDs past 2^63-1: clamped, they would have been one; kept apart, both are kept.
    for id in [(1u64 << 63) + 5, u64::MAX] {
        let raw = format!(r#"{{"id":"{id}","type":0,"content":"huge","author":{{"id":"2"}}}}"#);
        odd.push((Some(id.to_string()), raw.clone()));
        all.push((id, raw));
    }
    all.sort_by_key(|(p, _)| *p);
    Served { readable, odd, all }
}

fn channel_json(id: u64, kind: i32, name: &str, guild: u64, last: Option<u64>) -> String {
    let last = last.map_or("null".to_owned(), |l| format!(r#""{l}""#));
    format!(
        r#"{{"id":"{id}","type":{kind},"name":"{name}","guild_id":"{guild}","position":9,"permission_overwrites":[],"last_message_id":{last}}}"#
    )
}

/// A guild of one ordinary channel, plus (through the simulator's raw hooks) a channel of odd
/// messages, a channel of an unknown type with messages, one of an unknown type past 255
/// without them, and a listing entry without an id.
fn odd_guild() -> (Harness, Served) {
    let h = Harness::new(SimConfig {
        guild: GuildSpec {
            channels: vec![ChannelSpec::text("general", 30)],
            ..GuildSpec::test_small()
        },
        ..SimConfig::default()
    });
    let guild = h.sim.state().guild_id();
    let served = served();
    let newest = served.all.iter().map(|(p, _)| *p).max();
    let future: Vec<(u64, String)> = (1..=3u64)
        .map(|i| {
            let id = BASE + i;
            (id, message(id, 0, &format!("in a future channel {i}"), ""))
        })
        .collect();
    h.sim.state().set_faults(FaultSpec {
        raw_messages: vec![(ODD, served.all.clone()), (FUTURE_TEXT, future.clone())],
        extra_channels: vec![
            channel_json(ODD, 0, "odd", guild, newest),
            channel_json(FUTURE_TEXT, 17, "future-text", guild, Some(BASE + 3)),
            channel_json(FUTURE_OTHER, 300, "future-other", guild, None),
            r#"{"type":0,"name":"an entry without an id"}"#.to_owned(),
        ],
        ..FaultSpec::default()
    });
    (h, served)
}

#[derive(QueryableByName, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AnomalyRow {
    #[diesel(sql_type = BigInt)]
    channel_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    message_id: Option<String>,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = Text)]
    raw_json: String,
}

fn anomalies(h: &Harness) -> Vec<AnomalyRow> {
    diesel::sql_query("SELECT channel_id, message_id, reason, raw_json FROM anomalies ORDER BY id")
        .load(&mut h.conn())
        .unwrap()
}

fn status_text(h: &Harness) -> String {
    let out = h.bin(&["status", "--db", &h.db.display().to_string()]);
    out.assert_exit(0, "status");
    out.text()
}

/// Every message type, each odd value, one unreadable message between good ones, and a guild
/// listing with unknown channel types: exit 0, every readable message stored byte for byte,
/// every odd one kept verbatim and reported, and the unknown types archived or skipped.
#[test]
fn no_odd_message_or_channel_stops_a_channel_or_the_guild() {
    let (h, served) = odd_guild();
    let mut settings = h.settings();
    // Filters off: every readable element must be stored, system messages included.
    settings.filters.skip_empty = SkipEmpty::Off;
    settings.filters.command_prefix = String::new();
    let report = h.run(settings.clone(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");

    let archived = h.archived();
    for (id, raw) in &served.readable {
        let row = archived
            .get(&(*id as i64))
            .unwrap_or_else(|| panic!("message {id} not archived"));
        assert_eq!(&row.raw_json, raw, "stored byte for byte");
    }
    let odd_rows = archived
        .values()
        .filter(|r| r.channel_id == ODD as i64)
        .count();
    assert_eq!(odd_rows, served.readable.len());
    let types: Vec<i32> = diesel::sql_query(format!(
        "SELECT message_type AS n FROM messages WHERE channel_id = {ODD} ORDER BY id"
    ))
    .load::<N>(&mut h.conn())
    .unwrap()
    .into_iter()
    .map(|n| n.n as i32)
    .collect();
    for kind in TYPES {
        assert!(types.contains(&kind), "type {kind} kept as a number");
    }
    let half = archived
        .values()
        .find(|r| r.raw_json.contains(r"\ud83d"))
        .unwrap();
    assert_eq!(half.content, "half \u{FFFD} an emoji, and \u{FFFD}");

    let mut kept: Vec<(Option<String>, String)> = anomalies(&h)
        .into_iter()
        .map(|a| {
            assert_eq!(a.channel_id, ODD as i64);
            assert!(!a.reason.is_empty());
            (a.message_id, a.raw_json)
        })
        .collect();
    kept.sort();
    let mut want = served.odd.clone();
    want.sort();
    assert_eq!(kept, want, "each odd element kept verbatim");

    let odd = &report.channels[&ODD];
    assert_eq!(odd.status, ChannelStatus::Finished);
    assert_eq!(odd.stats.anomalies, served.odd.len() as u64);
    assert_eq!(report.totals.anomalies, served.odd.len() as u64);
    assert!(odd.stats.requests >= 2, "several pages: {:?}", odd.stats);
    assert!(
        discord_archiver::report::summary(&report).contains("4 anomalies"),
        "{}",
        discord_archiver::report::summary(&report)
    );

    // The unknown type that answers like a text channel is archived; the other is skipped.
    assert_eq!(
        report.channels[&FUTURE_TEXT].status,
        ChannelStatus::Finished
    );
    assert_eq!(
        archived
            .values()
            .filter(|r| r.channel_id == FUTURE_TEXT as i64)
            .count(),
        3
    );
    match &report.channels[&FUTURE_OTHER].status {
        ChannelStatus::Skipped(why) => {
            assert!(why.starts_with("unknown channel type 300"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    let general = h.channel_id("general");
    assert_eq!(report.channels[&general].status, ChannelStatus::Finished);
    assert_checkpoints_cover_rows(&h.db, &archived, "odd guild");

    let status = status_text(&h);
    for needle in [
        "skipped: unknown channel type 300",
        "type 300",
        "type 17",
        "4 unreadable kept apart",
    ] {
        assert!(status.contains(needle), "{needle} in\n{status}");
    }
    assert!(!status.contains("not fetched yet"), "{status}");

    // A second run meets nothing new and keeps each anomaly once.
    let again = h.run(settings, RunOptions::default());
    assert_eq!(again.exit_code, 0, "{again:#?}");
    assert_eq!(anomalies(&h).len(), served.odd.len());
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// With the default filters, forwards, polls and voice messages (all with `content: ""`) are
/// archived, not dropped as empty, and not counted as sent without the Message Content
/// intent; system messages with nothing to keep are still skipped.
#[test]
fn forwards_polls_and_voice_messages_are_archived_by_default() {
    let (h, served) = odd_guild();
    let report = h.run(h.settings(), RunOptions::default());
    assert_eq!(report.exit_code, 0, "{report:#?}");
    let archived = h.archived();
    for needle in [r#""message_snapshots""#, r#""poll""#, "voice-message.ogg"] {
        let (id, raw) = served
            .readable
            .iter()
            .find(|(_, raw)| raw.contains(needle))
            .unwrap();
        assert_eq!(
            archived.get(&(*id as i64)).map(|r| &r.raw_json),
            Some(raw),
            "{needle}"
        );
    }
    let odd = &report.channels[&ODD].stats;
    assert!(odd.skipped_empty_messages > 0, "system messages: {odd:?}");
    // Only the bare type 0 and type 19 of the type list look sent without the intent: a
    // forward, a poll or a voice message carries its payload.
    assert_eq!(odd.content_missing, 2, "a payload is not a missing intent");

    // The normalized export reads a forward's and a poll's text where they keep it.
    let out = h.bin(&[
        "export",
        "--db",
        &h.db.display().to_string(),
        "--normalized",
        "--channel",
        &ODD.to_string(),
    ]);
    out.assert_exit(0, "export");
    let lines = out.stdout();
    let contents: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(contents.iter().any(|c| c == "forwarded words"), "{lines}");
    assert!(
        contents.iter().any(|c| c == "Lunch?\n- Pizza\n- Soup"),
        "{lines}"
    );

    // The seed's rule drops them again.
    let mut seed = h.settings();
    seed.filters.skip_empty = SkipEmpty::Text;
    seed.database = h.dir.path().join("seed.db");
    let seeded = h.run(seed.clone(), RunOptions::default());
    assert_eq!(seeded.exit_code, 0);
    let rows = archived_at(&seed.database);
    assert!(!rows.values().any(|r| r.raw_json.contains(r#""poll""#)));
    assert!(!rows
        .values()
        .any(|r| r.raw_json.contains("voice-message.ogg")));
}

/// `status` says `failed: REASON` for a channel whose run failed, and `complete (no
/// messages)` for a thread fetched and found emptied, instead of "not fetched yet".
#[test]
fn status_tells_failed_and_emptied_channels_from_unfetched_ones() {
    let h = Harness::new(SimConfig {
        guild: GuildSpec {
            channels: vec![
                ChannelSpec::text("general", 20),
                ChannelSpec::text("broken", 20),
                ChannelSpec::thread("emptied", 11, 0, 3),
            ],
            ..GuildSpec::test_small()
        },
        ..SimConfig::default()
    });
    let broken = h.channel_id("broken");
    let emptied = h.channel_id("emptied");
    for (id, _) in h.sim.state().truth(emptied) {
        h.sim.state().delete_message(emptied, id);
    }
    h.sim.state().set_faults(FaultSpec {
        fail_first: vec![(broken, 1_000)],
        ..FaultSpec::default()
    });
    let mut settings = h.settings();
    settings.rate.max_retries = 0;
    settings.fetch.max_restarts = 0;
    let report = h.run(settings, RunOptions::default());
    assert_eq!(report.exit_code, 1, "{report:#?}");
    assert!(matches!(
        report.channels[&broken].status,
        ChannelStatus::Failed(_)
    ));
    assert_eq!(report.channels[&emptied].status, ChannelStatus::Finished);
    let status = status_text(&h);
    let line = |name: &str| {
        status
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} in\n{status}"))
            .to_owned()
    };
    assert!(line("#broken").contains("failed: "), "{status}");
    assert!(
        line("#emptied").contains("complete (no messages)"),
        "{status}"
    );
    assert!(!status.contains("not fetched yet"), "{status}");
    let json = h.bin(&["status", "--db", &h.db.display().to_string(), "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout()).unwrap();
    let states: BTreeMap<String, String> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(states["broken"], "failed");
    assert_eq!(states["emptied"], "complete");
}
