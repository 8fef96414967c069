//! `export`: the archive read back, oldest first per channel, streamed in constant memory.
//!
//! This is what stage 2 (chunking, embedding) reads. Two forms:
//!
//! - **raw** (the default): each line is a message's JSON exactly as Discord sent it
//!   (`raw_json`), so every field is there, including ones this version does not know. A
//!   server that pretty-prints (Discord does not; a proxy might) has its line breaks, which
//!   in JSON can only lie between tokens, written as spaces: one message, one line.
//! - **normalized** (`--normalized`): each line is one flat object with the archive's
//!   columns, the same for every message ([`ExportedMessage`]):
//!
//! ```json
//! {"id":"1234","channel_id":"567","guild_id":"89","author_id":"42","author_name":"ann",
//!  "author_is_bot":false,"content":"hello","created_at":"2024-05-01T12:34:56.789000+00:00",
//!  "edited_at":null,"message_type":0,"reference_message_id":null}
//! ```
//!
//!   Snowflakes are strings, as in Discord's own JSON (they do not fit a JavaScript
//!   number); `guild_id`, `edited_at` and `reference_message_id` may be `null`; times are
//!   RFC 3339 as Discord sent them; `message_type` is Discord's message type (0 default,
//!   19 reply, ...). A message whose text lives elsewhere has it as `content`: a forward's
//!   from its snapshot, a poll's question and answers (one answer a line, `- ` before each).
//!
//! Order: by channel ID, then by message ID (oldest first) within a channel, which is the
//! archive's `(channel_id, id)` index: SQLite streams rows off it without sorting, and rows
//! are read one at a time (diesel `load_iter`), so memory stays flat on any archive size.
//!
//! From Rust, [`messages`](fn@messages) gives the same rows as an iterator:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use discord_archiver::export::{self, ExportFilter};
//! let mut conn = discord_archiver::storage::open_ro(std::path::Path::new("archive.db"))?;
//! for message in export::messages(&mut conn, &ExportFilter::default())? {
//!     let message = message?;
//!     println!("{} {}: {}", message.created_at, message.author_name, message.content);
//! }
//! # Ok(())
//! # }
//! ```

use crate::storage::schema::messages;
use crate::storage::sql_id as id;
use diesel::connection::DefaultLoadingMode;
use diesel::prelude::*;
use diesel::sqlite::{Sqlite, SqliteConnection};
use serde::Serialize;
use std::io::Write;

/// Which messages to export.
#[derive(Clone, Debug, Default)]
pub struct ExportFilter {
    /// Empty means all channels.
    pub channels: Vec<u64>,
    /// Only messages with an ID greater than this.
    pub after: Option<u64>,
    /// Only messages with an ID less than this.
    pub before: Option<u64>,
}

/// One archived message: the indexed columns, plus the raw JSON (not part of the
/// normalized line; serialize it yourself if you want it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportedMessage {
    #[serde(with = "as_string")]
    pub id: u64,
    #[serde(with = "as_string")]
    pub channel_id: u64,
    #[serde(with = "opt_as_string")]
    pub guild_id: Option<u64>,
    #[serde(with = "as_string")]
    pub author_id: u64,
    pub author_name: String,
    pub author_is_bot: bool,
    pub content: String,
    pub created_at: String,
    pub edited_at: Option<String>,
    pub message_type: i32,
    #[serde(with = "opt_as_string")]
    pub reference_message_id: Option<u64>,
    /// The message exactly as the API sent it.
    #[serde(skip)]
    pub raw_json: String,
}

type Row = (
    i64,
    i64,
    Option<i64>,
    i64,
    String,
    bool,
    String,
    String,
    Option<String>,
    i32,
    Option<i64>,
    String,
);

impl From<Row> for ExportedMessage {
    fn from(r: Row) -> Self {
        let (
            id,
            channel_id,
            guild_id,
            author_id,
            author_name,
            author_is_bot,
            content,
            created_at,
            edited_at,
            message_type,
            reference_message_id,
            raw_json,
        ) = r;
        // A forward or a poll has its text outside `content`: the normalized form reads it there.
        let content = if content.trim().is_empty() {
            text_elsewhere(&raw_json).unwrap_or(content)
        } else {
            content
        };
        // Snowflakes are stored from u64s below 2^63, so they read back non-negative.
        ExportedMessage {
            id: id as u64,
            channel_id: channel_id as u64,
            guild_id: guild_id.map(|g| g as u64),
            author_id: author_id as u64,
            author_name,
            author_is_bot,
            content,
            created_at,
            edited_at,
            message_type,
            reference_message_id: reference_message_id.map(|r| r as u64),
            raw_json,
        }
    }
}

/// The text of a message that keeps it outside `content`: a forward's snapshot (its content),
/// a poll (its question, then each answer on a line of its own). `None` for anything else.
pub fn text_elsewhere(raw_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(raw_json).ok()?;
    let str_at = |v: &serde_json::Value, path: &[&str]| {
        path.iter()
            .try_fold(v, |v, key| v.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let forwarded: Vec<String> = v
        .get("message_snapshots")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| str_at(s, &["message", "content"]))
        .filter(|t| !t.trim().is_empty())
        .collect();
    if !forwarded.is_empty() {
        return Some(forwarded.join("\n"));
    }
    let poll = v.get("poll").filter(|p| !p.is_null())?;
    let mut lines: Vec<String> = str_at(poll, &["question", "text"]).into_iter().collect();
    lines.extend(
        poll.get("answers")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
            .filter_map(|a| str_at(a, &["poll_media", "text"]))
            .map(|t| format!("- {t}")),
    );
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn selected(filter: &ExportFilter) -> messages::BoxedQuery<'static, Sqlite> {
    let mut query = messages::table
        .order((messages::channel_id, messages::id))
        .into_boxed();
    if !filter.channels.is_empty() {
        let ids: Vec<i64> = filter.channels.iter().map(|c| id(*c)).collect();
        query = query.filter(messages::channel_id.eq_any(ids));
    }
    if let Some(after) = filter.after {
        query = query.filter(messages::id.gt(id(after)));
    }
    if let Some(before) = filter.before {
        query = query.filter(messages::id.lt(id(before)));
    }
    query
}

/// The selected messages, oldest first per channel, read one row at a time.
///
/// The iterator borrows the connection until it is dropped.
pub fn messages<'c>(
    conn: &'c mut SqliteConnection,
    filter: &ExportFilter,
) -> QueryResult<impl Iterator<Item = QueryResult<ExportedMessage>> + 'c> {
    let rows = selected(filter)
        .select((
            messages::id,
            messages::channel_id,
            messages::guild_id,
            messages::author_id,
            messages::author_name,
            messages::author_is_bot,
            messages::content,
            messages::created_at,
            messages::edited_at,
            messages::message_type,
            messages::reference_message_id,
            messages::raw_json,
        ))
        .load_iter::<Row, DefaultLoadingMode>(conn)?;
    Ok(rows.map(|row| row.map(ExportedMessage::from)))
}

/// Streams the raw JSON of the selected messages, one per line; returns how many were written.
pub fn export_jsonl(
    conn: &mut SqliteConnection,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let query = selected(filter).select(messages::raw_json);
    let mut written = 0;
    for raw in query.load_iter::<String, DefaultLoadingMode>(conn)? {
        let mut raw = raw?.into_bytes();
        // Valid JSON has no raw CR or LF inside a string: these are whitespace between tokens.
        for b in raw.iter_mut().filter(|b| matches!(b, b'\n' | b'\r')) {
            *b = b' ';
        }
        raw.push(b'\n');
        out.write_all(&raw)?;
        written += 1;
    }
    out.flush()?;
    Ok(written)
}

/// Streams the normalized form (see the module docs), one object per line; returns how many
/// were written.
pub fn export_normalized_jsonl(
    conn: &mut SqliteConnection,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let mut written = 0;
    // Serialized into a buffer first, so that a write error (a closed pipe) stays an
    // `io::Error` the caller can recognize.
    let mut line = Vec::new();
    for message in messages(conn, filter)? {
        line.clear();
        serde_json::to_writer(&mut line, &message?)?;
        line.push(b'\n');
        out.write_all(&line)?;
        written += 1;
    }
    out.flush()?;
    Ok(written)
}

mod as_string {
    pub fn serialize<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }
}

mod opt_as_string {
    pub fn serialize<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::models::NewMessage;

    fn archive() -> (tempfile::TempDir, crate::storage::Archive) {
        let dir = tempfile::tempdir().unwrap();
        let mut a = crate::storage::open_rw(&dir.path().join("t.db")).unwrap();
        let raws: Vec<String> = (0..6).map(|i| format!("{{\"id\":\"{i}\"}}")).collect();
        // Two channels, inserted out of order.
        let rows: Vec<NewMessage> = [(5, 20), (1, 10), (3, 20), (2, 10), (4, 10)]
            .iter()
            .map(|&(id, channel)| NewMessage {
                id,
                channel_id: channel,
                guild_id: (channel == 10).then_some(1),
                author_id: 3,
                author_name: "ann".into(),
                author_is_bot: false,
                content: "héllo \"🎉\"\n".into(),
                created_at: "2024-05-01T12:34:56.789000+00:00".into(),
                edited_at: None,
                message_type: 19,
                reference_message_id: (id == 2).then_some(1),
                raw_json: raws[id as usize].as_str().into(),
            })
            .collect();
        diesel::insert_into(messages::table)
            .values(&rows)
            .execute(&mut a.conn)
            .unwrap();
        (dir, a)
    }

    fn ids(conn: &mut SqliteConnection, filter: &ExportFilter) -> Vec<(u64, u64)> {
        messages(conn, filter)
            .unwrap()
            .map(|m| m.map(|m| (m.channel_id, m.id)).unwrap())
            .collect()
    }

    #[test]
    fn oldest_first_per_channel_and_filtered() {
        let (_d, mut a) = archive();
        let c = &mut a.conn;
        assert_eq!(
            ids(c, &ExportFilter::default()),
            [(10, 1), (10, 2), (10, 4), (20, 3), (20, 5)]
        );
        let f = ExportFilter {
            channels: vec![20],
            ..Default::default()
        };
        assert_eq!(ids(c, &f), [(20, 3), (20, 5)]);
        let f = ExportFilter {
            after: Some(1),
            before: Some(5),
            ..Default::default()
        };
        assert_eq!(ids(c, &f), [(10, 2), (10, 4), (20, 3)]);
    }

    #[test]
    fn raw_lines_are_the_stored_json() {
        let (_d, mut a) = archive();
        let mut out = Vec::new();
        let n = export_jsonl(&mut a.conn, &ExportFilter::default(), &mut out).unwrap();
        assert_eq!(n, 5);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"id":"1"}"#);
        assert_eq!(lines[4], r#"{"id":"5"}"#);
    }

    #[test]
    fn pretty_printed_json_still_takes_one_line() {
        let (_d, mut a) = archive();
        let raw = "{\r\n  \"id\": \"7\",\n  \"content\": \"a\\nb\"\n}";
        diesel::update(messages::table.find(1))
            .set(messages::raw_json.eq(raw))
            .execute(&mut a.conn)
            .unwrap();
        let mut out = Vec::new();
        export_jsonl(&mut a.conn, &ExportFilter::default(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let stored: serde_json::Value = serde_json::from_str(raw).unwrap();
        assert_eq!(first, stored);
        assert_eq!(first["content"], "a\nb");
    }

    #[test]
    fn normalized_lines_are_flat_and_documented() {
        let (_d, mut a) = archive();
        let mut out = Vec::new();
        export_normalized_jsonl(&mut a.conn, &ExportFilter::default(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            first,
            serde_json::json!({
                "id": "1", "channel_id": "10", "guild_id": "1", "author_id": "3",
                "author_name": "ann", "author_is_bot": false, "content": "héllo \"🎉\"\n",
                "created_at": "2024-05-01T12:34:56.789000+00:00", "edited_at": null,
                "message_type": 19, "reference_message_id": null
            })
        );
        let second: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["reference_message_id"], "1");
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["guild_id"], serde_json::Value::Null);
        assert_eq!(text.lines().count(), 5);
    }

    #[test]
    fn a_forward_and_a_poll_have_their_text_in_the_normalized_form() {
        let forward = r#"{"id":"1","content":"","message_reference":{"type":1,"message_id":"5"},
            "message_snapshots":[{"message":{"content":"the forwarded text","type":0}}]}"#;
        assert_eq!(
            text_elsewhere(forward).as_deref(),
            Some("the forwarded text")
        );
        let poll = r#"{"id":"1","content":"","poll":{"question":{"text":"Lunch?"},
            "answers":[{"answer_id":1,"poll_media":{"text":"Pizza"}},{"answer_id":2,"poll_media":{"text":"Soup","emoji":{"name":"🍲"}}}]}}"#;
        assert_eq!(
            text_elsewhere(poll).as_deref(),
            Some("Lunch?\n- Pizza\n- Soup")
        );
        for other in [r#"{"id":"1","content":""}"#, r#"{"poll":null}"#, "not json"] {
            assert_eq!(text_elsewhere(other), None, "{other}");
        }
        let (_d, mut a) = archive();
        diesel::update(messages::table.find(1))
            .set((messages::content.eq(""), messages::raw_json.eq(poll)))
            .execute(&mut a.conn)
            .unwrap();
        let first = messages(&mut a.conn, &ExportFilter::default())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(first.content, "Lunch?\n- Pizza\n- Soup");
        assert_eq!(first.raw_json, poll, "the raw JSON is untouched");
    }
}
