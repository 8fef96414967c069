//! `export`: the archive as JSON Lines, oldest first per channel, streamed in constant memory.
//!
//! Each line is a message's raw JSON exactly as Discord sent it: what stage 2 reads.

use crate::storage::schema::messages;
use crate::storage::sql_id as id;
use diesel::connection::DefaultLoadingMode;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use std::io::Write;

/// Which messages to export.
#[derive(Clone, Debug, Default)]
pub struct ExportFilter {
    /// Empty means all channels.
    pub channels: Vec<u64>,
    pub after: Option<u64>,
    pub before: Option<u64>,
}

/// Streams the raw JSON of the selected messages, one per line; returns how many were written.
pub fn export_jsonl(
    conn: &mut SqliteConnection,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let mut query = messages::table
        .select(messages::raw_json)
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
    let mut written = 0;
    for raw in query.load_iter::<String, DefaultLoadingMode>(conn)? {
        let raw = raw?;
        out.write_all(raw.as_bytes())?;
        out.write_all(b"\n")?;
        written += 1;
    }
    out.flush()?;
    Ok(written)
}
