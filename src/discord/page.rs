//! Response bodies parsed once: each message's fields for the archive plus its exact raw JSON.
//!
//! The raw text of every message is a slice of the response body (split with serde_json's
//! `RawValue`), never a re-serialization, so stage 2 sees exactly what Discord sent, including
//! fields this version does not know. The fields we index are read with a lenient view rather
//! than twilight-model's full `Message`: one unexpected field shape in a future API version must
//! not cost us the message, and the full model costs several times more per message.

use super::error::ApiError;
use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

/// A message's exact JSON: a range of the page body it came in, shared by the whole page.
#[derive(Clone)]
pub struct RawJson {
    body: Arc<str>,
    range: Range<usize>,
}

impl RawJson {
    pub fn as_str(&self) -> &str {
        &self.body[self.range.clone()]
    }
}

impl std::fmt::Debug for RawJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawJson({} bytes)", self.range.len())
    }
}

/// One message as the archive stores it.
#[derive(Clone, Debug)]
pub struct FetchedMessage {
    pub id: u64,
    pub author_id: u64,
    pub author_name: String,
    pub author_is_bot: bool,
    pub content: String,
    pub created_at: String,
    pub edited_at: Option<String>,
    pub kind: u8,
    pub reference_message_id: Option<u64>,
    /// Attachments, embeds, stickers or components: what an empty `content` may still carry.
    pub has_payload: bool,
    pub raw: RawJson,
}

/// A page of messages, oldest first (Discord sends them newest first).
#[derive(Debug, Default)]
pub struct Page {
    pub messages: Vec<FetchedMessage>,
    /// How many messages Discord returned (a page shorter than the limit is the last).
    pub returned: usize,
}

#[derive(Deserialize)]
struct MessageView<'a> {
    #[serde(deserialize_with = "snowflake")]
    id: u64,
    #[serde(borrow)]
    author: AuthorView<'a>,
    #[serde(borrow, default)]
    content: Cow<'a, str>,
    // Discord always sends it; a server that does not still gets its messages archived.
    #[serde(borrow, default)]
    timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    edited_timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "type", default)]
    kind: u8,
    #[serde(default)]
    message_reference: Option<ReferenceView>,
    #[serde(default)]
    attachments: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    embeds: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    sticker_items: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    components: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
struct AuthorView<'a> {
    #[serde(deserialize_with = "snowflake")]
    id: u64,
    #[serde(borrow, default)]
    username: Cow<'a, str>,
    #[serde(default)]
    bot: bool,
}

#[derive(Deserialize)]
struct ReferenceView {
    #[serde(default, deserialize_with = "opt_snowflake")]
    message_id: Option<u64>,
}

/// Snowflakes arrive as strings (sometimes numbers, in older payloads); both are accepted.
fn snowflake<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<'a> {
        Num(u64),
        Str(&'a str),
    }
    match Either::deserialize(d)? {
        Either::Num(n) => Ok(n),
        Either::Str(s) => s
            .parse()
            .map_err(|_| de::Error::custom(format!("not a snowflake: {s:?}"))),
    }
}

fn opt_snowflake<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "snowflake")] u64);
    Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
}

/// A field that may be absent (`None`, via `default`), null (`Some(None)`) or a snowflake.
fn listed_snowflake<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    opt_snowflake(d).map(Some)
}

impl ChannelInfo {
    /// The newest message ID the listing reported, if it reported one.
    pub fn newest(&self) -> Option<u64> {
        self.last_message_id.flatten()
    }
}

fn bad_body(what: &str, e: impl std::fmt::Display) -> ApiError {
    // Malformed or truncated bodies are what a flaky proxy or connection produces: retry.
    ApiError::Transient(format!("malformed {what}: {e}"))
}

/// Parses a `GET /channels/{id}/messages` body into a page, oldest first.
pub fn parse_messages(body: Vec<u8>) -> Result<Page, ApiError> {
    let body: Arc<str> = String::from_utf8(body)
        .map_err(|e| bad_body("message page (not UTF-8)", e))?
        .into();
    let raws: Vec<&RawValue> =
        serde_json::from_str(&body).map_err(|e| bad_body("message page", e))?;
    let base = body.as_ptr() as usize;
    let mut messages = Vec::with_capacity(raws.len());
    for raw in raws.iter().rev() {
        let text = raw.get();
        let start = text.as_ptr() as usize - base;
        let view: MessageView<'_> =
            serde_json::from_str(text).map_err(|e| bad_body("message", e))?;
        let has_payload = [
            &view.attachments,
            &view.embeds,
            &view.sticker_items,
            &view.components,
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()));
        messages.push(FetchedMessage {
            id: view.id,
            author_id: view.author.id,
            author_name: view.author.username.into_owned(),
            author_is_bot: view.author.bot,
            content: view.content.into_owned(),
            created_at: view.timestamp.into_owned(),
            edited_at: view.edited_timestamp.map(Cow::into_owned),
            kind: view.kind,
            reference_message_id: view.message_reference.and_then(|r| r.message_id),
            has_payload,
            raw: RawJson {
                body: body.clone(),
                range: start..start + text.len(),
            },
        });
    }
    // Discord promises newest first; sorting makes a misbehaving server harmless (cursor math
    // below relies on ascending order).
    if !messages.windows(2).all(|w| w[0].id < w[1].id) {
        messages.sort_by_key(|m| m.id);
        messages.dedup_by_key(|m| m.id);
    }
    Ok(Page {
        returned: raws.len(),
        messages,
    })
}

/// A channel (or thread) as listings describe it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ChannelInfo {
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default, deserialize_with = "opt_snowflake")]
    pub guild_id: Option<u64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_snowflake")]
    pub parent_id: Option<u64>,
    /// `None`: the listing did not say; `Some(None)`: it said the channel has no message.
    #[serde(default, deserialize_with = "listed_snowflake")]
    pub last_message_id: Option<Option<u64>>,
    #[serde(default)]
    pub position: Option<i64>,
    #[serde(default)]
    pub permission_overwrites: Vec<crate::permissions::Overwrite>,
    /// Threads only: when it was archived (the cursor of archived-thread listings).
    #[serde(default)]
    pub thread_metadata: Option<ThreadMetadata>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ThreadMetadata {
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub archive_timestamp: Option<String>,
}

/// `GET /guilds/{id}/threads/active` and the archived-thread listings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ThreadList {
    pub threads: Vec<ChannelInfo>,
    #[serde(default)]
    pub has_more: bool,
}

/// What permission math needs from `GET /guilds/{id}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct GuildInfo {
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
    #[serde(default, deserialize_with = "opt_snowflake")]
    pub owner_id: Option<u64>,
    #[serde(default)]
    pub roles: Vec<crate::permissions::Role>,
}

/// What permission math needs from `GET /guilds/{id}/members/{user}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct MemberInfo {
    #[serde(default)]
    pub roles: Vec<Snowflake>,
}

/// A snowflake in a list (`"roles": ["1", "2"]`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub struct Snowflake(#[serde(deserialize_with = "snowflake")] pub u64);

/// Parses any of the JSON bodies above.
pub fn parse_json<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_body(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"[
      {"id":"30","type":19,"content":"re: \"quoted\" \\ \u00e9 👨‍👩‍👧","channel_id":"9","author":{"id":"2","username":"bob","discriminator":"0","avatar":null},
       "attachments":[],"embeds":[],"mentions":[],"mention_roles":[],"pinned":false,"mention_everyone":false,"tts":false,
       "timestamp":"2024-05-01T12:34:56.789000+00:00","edited_timestamp":"2024-05-01T12:40:00.000000+00:00","flags":0,
       "message_reference":{"type":0,"message_id":"20","channel_id":"9"},"x_future_field":{"nested":[1,"two"]}},
      {"id":"20","type":0,"content":"","channel_id":"9","author":{"id":"3","username":"robot","bot":true,"discriminator":"0"},
       "attachments":[{"id":"1","filename":"a.png"}],"embeds":[],"mentions":[],"mention_roles":[],"pinned":false,
       "mention_everyone":false,"tts":false,"timestamp":"2024-05-01T12:00:00.000000+00:00","edited_timestamp":null}
    ]"#;

    #[test]
    fn pages_come_out_oldest_first_with_exact_raw_json() {
        let page = parse_messages(PAGE.as_bytes().to_vec()).unwrap();
        assert_eq!(page.returned, 2);
        let ids: Vec<u64> = page.messages.iter().map(|m| m.id).collect();
        assert_eq!(ids, [20, 30]);
        let reply = &page.messages[1];
        assert_eq!(reply.content, "re: \"quoted\" \\ é 👨‍👩‍👧");
        assert_eq!(reply.reference_message_id, Some(20));
        assert_eq!(reply.kind, 19);
        assert_eq!(reply.author_name, "bob");
        assert!(!reply.author_is_bot);
        assert!(!reply.has_payload);
        assert_eq!(
            reply.edited_at.as_deref(),
            Some("2024-05-01T12:40:00.000000+00:00")
        );
        // The raw text is the served bytes, escapes and unknown fields included.
        assert!(reply.raw.as_str().starts_with(r#"{"id":"30""#));
        assert!(reply.raw.as_str().contains(r#"\"quoted\" \\ \u00e9"#));
        assert!(reply
            .raw
            .as_str()
            .ends_with(r#""x_future_field":{"nested":[1,"two"]}}"#));
        let bot = &page.messages[0];
        assert!(bot.author_is_bot);
        assert!(bot.has_payload);
        assert_eq!(bot.edited_at, None);
        // The raw JSON re-parses as the same object the API sent.
        let served: Vec<serde_json::Value> = serde_json::from_str(PAGE).unwrap();
        let kept: serde_json::Value = serde_json::from_str(reply.raw.as_str()).unwrap();
        assert_eq!(kept, served[0]);
    }

    #[test]
    fn messages_missing_optional_looking_fields_are_still_archived() {
        let page = parse_messages(br#"[{"id":"5","author":{"id":"1"}}]"#.to_vec()).unwrap();
        let m = &page.messages[0];
        assert_eq!(
            (m.id, m.author_name.as_str(), m.created_at.as_str()),
            (5, "", "")
        );
        assert_eq!(m.raw.as_str(), r#"{"id":"5","author":{"id":"1"}}"#);
    }

    #[test]
    fn malformed_bodies_are_transient() {
        for body in [
            &b"[{\"id\":"[..],
            b"<html>502</html>",
            b"{\"message\":1}",
            &[0xff, 0xfe],
        ] {
            assert!(matches!(
                parse_messages(body.to_vec()),
                Err(ApiError::Transient(_))
            ));
        }
        assert_eq!(parse_messages(b"[]".to_vec()).unwrap().returned, 0);
    }

    #[test]
    fn out_of_order_pages_are_sorted_and_deduplicated() {
        let m = |id: u64| {
            format!(r#"{{"id":"{id}","author":{{"id":"1","username":"a"}},"timestamp":"t"}}"#)
        };
        let body = format!("[{},{},{},{}]", m(2), m(5), m(2), m(3));
        let page = parse_messages(body.into_bytes()).unwrap();
        let ids: Vec<u64> = page.messages.iter().map(|m| m.id).collect();
        assert_eq!(ids, [2, 3, 5]);
        assert_eq!(page.returned, 4);
    }

    #[test]
    fn thread_listings_and_guilds_parse() {
        let body = br#"{"threads":[{"id":"9","type":11,"parent_id":"2","name":"t","last_message_id":"12",
            "thread_metadata":{"archived":true,"archive_timestamp":"2024-05-01T12:34:56.789000+00:00","auto_archive_duration":60,"locked":false}}],
            "members":[],"has_more":true}"#;
        let list: ThreadList = parse_json("threads", body).unwrap();
        assert!(list.has_more);
        assert_eq!(
            list.threads[0]
                .thread_metadata
                .as_ref()
                .unwrap()
                .archive_timestamp
                .as_deref(),
            Some("2024-05-01T12:34:56.789000+00:00")
        );
        let guild: GuildInfo = parse_json(
            "guild",
            br#"{"id":"1","owner_id":"5","roles":[{"id":"1","permissions":"1024"}],"name":"g"}"#,
        )
        .unwrap();
        assert_eq!(guild.roles[0].permissions, 1024);
        let member: MemberInfo =
            parse_json("member", br#"{"roles":["3","4"],"user":{"id":"7"}}"#).unwrap();
        assert_eq!(member.roles, [Snowflake(3), Snowflake(4)]);
    }

    #[test]
    fn channels_parse_leniently() {
        let body = br#"[{"id":"1","type":4,"name":"cat","guild_id":"5","position":0},
            {"id":"2","type":0,"name":"general","parent_id":"1","last_message_id":"99","permission_overwrites":[],"nsfw":false},
            {"id":"3","type":2,"name":"voice","last_message_id":null,"bitrate":64000}]"#;
        let channels: Vec<ChannelInfo> = parse_json("channels", body).unwrap();
        assert_eq!(channels.len(), 3);
        assert_eq!(channels[1].parent_id, Some(1));
        assert_eq!(channels[1].last_message_id, Some(Some(99)));
        assert_eq!(channels[1].newest(), Some(99));
        // Null (no message ever) is not the same as not listed at all.
        assert_eq!(channels[2].last_message_id, Some(None));
        assert_eq!(channels[0].last_message_id, None);
    }
}
