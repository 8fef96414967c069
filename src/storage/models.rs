//! Rows as diesel reads and writes them.

use super::schema::{channels, checkpoints, messages};
use diesel::prelude::*;

/// One message row, borrowing from the batch that carries it: no copy on the way to SQLite.
///
/// `treat_none_as_default_value = false` makes diesel write one multi-row `VALUES` statement
/// instead of one INSERT per row (its default on SQLite).
#[derive(Insertable, Debug)]
#[diesel(table_name = messages, treat_none_as_default_value = false)]
pub struct NewMessage<'a> {
    pub id: i64,
    pub channel_id: i64,
    pub guild_id: Option<i64>,
    pub author_id: i64,
    pub author_name: &'a str,
    pub author_is_bot: bool,
    pub content: &'a str,
    pub created_at: &'a str,
    pub edited_at: Option<&'a str>,
    pub message_type: i32,
    pub reference_message_id: Option<i64>,
    pub raw_json: &'a str,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = checkpoints)]
pub struct CheckpointRow {
    pub channel_id: i64,
    pub last_message_id: i64,
    pub last_fetch_timestamp: String,
    pub oldest_message_id: Option<i64>,
    pub oldest_message_timestamp: Option<String>,
    pub total_messages: i64,
    pub complete: bool,
    pub updated_at: String,
}

/// A channel as the listings describe it; the skip columns are written separately, so that
/// recording a listing never forgets why a channel was skipped.
#[derive(Insertable, AsChangeset, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = channels, treat_none_as_null = true)]
pub struct ChannelRow {
    pub id: i64,
    pub guild_id: Option<i64>,
    pub name: Option<String>,
    pub kind: i32,
    pub parent_id: Option<i64>,
    pub last_message_id: Option<i64>,
    pub updated_at: String,
}

/// A channel as the archive knows it.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = channels)]
pub struct KnownChannel {
    pub id: i64,
    pub guild_id: Option<i64>,
    pub name: Option<String>,
    pub kind: i32,
    pub parent_id: Option<i64>,
    pub last_message_id: Option<i64>,
    pub skip_reason: Option<String>,
    pub skipped_at: Option<String>,
}
