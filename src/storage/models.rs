//! Rows as diesel reads and writes them.

use super::schema::{anomalies, channels, checkpoints, fetch_slices, messages};
use crate::body::PageStr;
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use diesel::sqlite::Sqlite;

/// One message row, owned: diesel caches a multi-row INSERT's prepared statement only for
/// arrays of `'static` rows, and a page's worth of parameters is costly to parse every time.
/// The text columns are ranges of the page body the message came in (see [`StoredText`]).
///
/// `treat_none_as_default_value = false` makes diesel write one multi-row `VALUES` statement
/// instead of one INSERT per row (its default on SQLite).
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = messages, treat_none_as_default_value = false)]
pub struct NewMessage {
    pub id: i64,
    pub channel_id: i64,
    pub guild_id: Option<i64>,
    pub author_id: i64,
    pub author_name: StoredText,
    pub author_is_bot: bool,
    pub content: StoredText,
    pub created_at: StoredText,
    pub edited_at: Option<StoredText>,
    pub message_type: i32,
    pub reference_message_id: Option<i64>,
    pub raw_json: StoredText,
}

/// Text from a page body, bound to SQLite in place: diesel binds borrowed text without a copy,
/// so a message's text is copied once, by SQLite, into its row.
#[derive(diesel::expression::AsExpression, Debug, Clone)]
#[diesel(sql_type = Text)]
pub struct StoredText(pub PageStr);

impl ToSql<Text, Sqlite> for StoredText {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.as_str());
        Ok(IsNull::No)
    }
}

impl From<&str> for StoredText {
    fn from(text: &str) -> StoredText {
        StoredText(PageStr::from(text))
    }
}

/// A page element kept verbatim because it cannot be stored as a message.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = anomalies, treat_none_as_default_value = false)]
pub struct NewAnomaly {
    pub channel_id: i64,
    pub message_id: Option<String>,
    pub reason: String,
    pub raw_json: StoredText,
    pub seen_at: String,
}

#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = checkpoints, treat_none_as_null = true)]
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

/// A part of a channel fetched ahead of its checkpoint: messages with `after_id < id <=
/// cursor_id` are fetched; the slice ends at `until_id` (inclusive, `i64::MAX` while open).
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = fetch_slices)]
pub struct SliceRow {
    pub channel_id: i64,
    pub after_id: i64,
    pub until_id: i64,
    pub cursor_id: i64,
    pub done: bool,
    pub reached_end: bool,
}
