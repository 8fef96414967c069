//! Response bodies parsed once: each message's fields for the archive plus its exact raw JSON.
//!
//! The raw text of every message is a range of the response body, found in the same pass that
//! reads its fields, never a re-serialization, so stage 2 sees exactly what Discord sent,
//! including fields this version does not know. The fields we index are read with a lenient view rather
//! than twilight-model's full `Message`: one unexpected field shape in a future API version must
//! not cost us the message, and the full model costs several times more per message.

use super::error::{ApiError, TransientKind};
use crate::body::PageStr;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::sync::Arc;

/// One message as the archive stores it.
#[derive(Clone, Debug)]
pub struct FetchedMessage {
    pub id: u64,
    pub author_id: u64,
    pub author_name: PageStr,
    pub author_is_bot: bool,
    pub content: PageStr,
    pub created_at: PageStr,
    pub edited_at: Option<PageStr>,
    /// Discord's message type, an open set (0–55 and growing): unknown values are kept.
    pub kind: i32,
    pub reference_message_id: Option<u64>,
    /// Attachments (voice messages included), embeds, stickers, a poll, a forwarded snapshot or
    /// components: what a message with empty `content` may still carry.
    pub has_payload: bool,
    /// The message object exactly as served.
    pub raw: PageStr,
    /// Why this message cannot be archived as a row (only `id` and `raw` are then meaningful):
    /// it is quarantined with its raw text, and its ID still moves the cursor past it.
    pub anomaly: Option<String>,
}

impl FetchedMessage {
    /// The message as an anomaly to quarantine, if it is one (rare: the copy is cheap enough).
    pub fn as_anomaly(&self) -> Option<Anomaly> {
        self.anomaly.as_ref().map(|reason| Anomaly {
            message_id: Some(self.id),
            reason: reason.clone(),
            raw: self.raw.clone(),
        })
    }
}

/// An element of a page the archive cannot store as a message: kept verbatim with the
/// reason, so nothing Discord sent is lost and the rest of the page is archived.
#[derive(Clone, Debug)]
pub struct Anomaly {
    /// The element's ID when it could be read (it may not fit the archive's INTEGER).
    pub message_id: Option<u64>,
    pub reason: String,
    /// The element exactly as served.
    pub raw: PageStr,
}

/// A page of messages, oldest first (Discord sends them newest first).
#[derive(Debug, Default)]
pub struct Page {
    /// Readable messages, and unstorable ones whose ID could be read (marked
    /// [`FetchedMessage::anomaly`]): both count for the cursor.
    pub messages: Vec<FetchedMessage>,
    /// Elements without a readable ID: they cannot move the cursor, only be reported.
    pub unplaced: Vec<Anomaly>,
    /// How many elements Discord returned (a page shorter than the limit is the last).
    pub returned: usize,
}

/// The fields the archiver pages and filters on, each read leniently: missing or null reads as
/// its default, numbers at the width Discord documents, text with lone surrogates decoded with
/// a replacement character (the raw JSON keeps what was sent). What still fails makes the
/// element an [`Anomaly`], never the page a failure.
#[derive(Deserialize)]
struct MessageView<'a> {
    #[serde(default, deserialize_with = "opt_snowflake")]
    id: Option<u64>,
    #[serde(borrow, default)]
    author: Option<AuthorView<'a>>,
    #[serde(borrow, default)]
    content: Option<Text<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Text<'a>>,
    #[serde(borrow, default)]
    edited_timestamp: Option<Text<'a>>,
    /// int32 in Discord's OpenAPI description.
    #[serde(rename = "type", default)]
    kind: Option<i32>,
    #[serde(default)]
    message_reference: Option<ReferenceView>,
    #[serde(default)]
    attachments: NonEmpty,
    #[serde(default)]
    embeds: NonEmpty,
    #[serde(default)]
    sticker_items: NonEmpty,
    #[serde(default)]
    components: NonEmpty,
    /// Forwards carry their message here, with `content: ""` outside.
    #[serde(default)]
    message_snapshots: NonEmpty,
    #[serde(default)]
    poll: Option<IgnoredAny>,
}

/// Only the ID, for an element whose other fields cannot be read.
#[derive(Deserialize)]
struct IdView {
    #[serde(default, deserialize_with = "opt_snowflake")]
    id: Option<u64>,
}

/// Whether a JSON array (or object) has any element, read without keeping the elements; null
/// and scalars read as empty.
#[derive(Default)]
struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = NonEmpty;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array or null")
            }

            fn visit_unit<E: de::Error>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmpty(any))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmpty(any))
            }
        }
        d.deserialize_any(Visit)
    }
}

#[derive(Deserialize)]
struct AuthorView<'a> {
    #[serde(default, deserialize_with = "opt_snowflake")]
    id: Option<u64>,
    #[serde(borrow, default)]
    username: Option<Text<'a>>,
    #[serde(default)]
    bot: Option<bool>,
}

/// A JSON string as its bytes: borrowed from the page when served without escapes, decoded
/// (as WTF-8, so an unpaired surrogate like `\ud83d` is kept, not refused) otherwise.
/// serde_json refuses such a string as a `str`; read as bytes it does not.
struct Text<'a>(Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_bytes<E: de::Error>(self, b: &'de [u8]) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(b)))
            }

            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(b.to_vec())))
            }

            fn visit_byte_buf<E: de::Error>(self, b: Vec<u8>) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(b)))
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s.as_bytes())))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.as_bytes().to_vec())))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

#[derive(Deserialize)]
struct ReferenceView {
    #[serde(default, deserialize_with = "opt_snowflake")]
    message_id: Option<u64>,
}

/// Snowflakes arrive as strings (sometimes numbers, in older payloads); both are accepted.
fn snowflake<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Visit;
    impl Visitor<'_> for Visit {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a snowflake (a string or a number)")
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
            Ok(n)
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
            u64::try_from(n).map_err(|_| E::custom(format!("not a snowflake: {n}")))
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
            s.parse()
                .map_err(|_| E::custom(format!("not a snowflake: {s:?}")))
        }
    }
    d.deserialize_any(Visit)
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

/// Text that may be null or absent, read leniently (see [`Text`]), owned.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Text<'de>>::deserialize(d)?.map(|t| crate::body::from_wtf8(t.0.into_owned())))
}

impl ChannelInfo {
    /// The newest message ID the listing reported, if it reported one.
    pub fn newest(&self) -> Option<u64> {
        self.last_message_id.flatten()
    }
}

fn bad_body(what: &str, e: impl std::fmt::Display) -> ApiError {
    // A body that is not a JSON array, or one cut short, is what a flaky proxy or connection
    // produces: retry. (One unreadable element in a sound array is not this: see `element`.)
    ApiError::Retry(TransientKind::Malformed(format!("malformed {what}: {e}")))
}

/// Parses a `GET /channels/{id}/messages` body into a page, oldest first.
///
/// One pass over the body: each element of the array is read as a view of the fields we index
/// while the stream reports where it ends, so the raw text is a range of the body and nothing
/// is scanned twice. An element that cannot be read as a message is scanned again, only to find
/// its end and, if it can, its ID: it becomes an anomaly and the page goes on.
pub fn parse_messages(body: Vec<u8>) -> Result<Page, ApiError> {
    let body: Arc<str> = String::from_utf8(body)
        .map_err(|e| bad_body("message page (not UTF-8)", e))?
        .into();
    let text: &str = &body;
    let bytes = text.as_bytes();
    let malformed = |what: &str| bad_body("message page", what);
    let mut pos = skip_ws(bytes, 0);
    // Discord's OpenAPI description allows a null list: no messages.
    if text[pos..].trim_end() == "null" {
        return Ok(Page::default());
    }
    if bytes.get(pos) != Some(&b'[') {
        return Err(malformed("not a JSON array"));
    }
    pos = skip_ws(bytes, pos + 1);
    let mut messages = Vec::with_capacity(usize::from(super::PAGE_LIMIT));
    let mut unplaced = Vec::new();
    let mut returned = 0;
    if bytes.get(pos) == Some(&b']') {
        pos += 1;
    } else {
        loop {
            let end = match element(&body, pos)? {
                (end, Ok(message)) => {
                    messages.push(message);
                    end
                }
                (end, Err(odd)) => {
                    unplaced.push(odd);
                    end
                }
            };
            returned += 1;
            pos = skip_ws(bytes, end);
            match bytes.get(pos) {
                Some(b',') => pos = skip_ws(bytes, pos + 1),
                Some(b']') => {
                    pos += 1;
                    break;
                }
                _ => return Err(malformed("expected `,` or `]` after a message")),
            }
        }
    }
    if skip_ws(bytes, pos) != bytes.len() {
        return Err(malformed("trailing characters after the array"));
    }
    // Discord promises newest first; sorting makes a misbehaving server harmless (cursor math
    // relies on ascending order).
    messages.reverse();
    if !messages.windows(2).all(|w| w[0].id < w[1].id) {
        messages.sort_by_key(|m| m.id);
        messages.dedup_by_key(|m| m.id);
    }
    unplaced.reverse();
    Ok(Page {
        returned,
        messages,
        unplaced,
    })
}

/// Reads the array element starting at `pos`: where it ends, and the message (an anomaly
/// marked on it when its ID is readable) or an anomaly without an ID. Fails only when the
/// element is not JSON at all (a cut or garbled body).
#[allow(clippy::type_complexity)]
fn element(
    body: &Arc<str>,
    pos: usize,
) -> Result<(usize, Result<FetchedMessage, Anomaly>), ApiError> {
    let text: &str = body;
    let mut stream =
        serde_json::Deserializer::from_str(&text[pos..]).into_iter::<MessageView<'_>>();
    let why = match stream.next() {
        Some(Ok(view)) => {
            let end = pos + stream.byte_offset();
            return Ok((end, fetched(body, view, &text[pos..end])));
        }
        Some(Err(e)) => e.to_string(),
        None => return Err(bad_body("message page", "the array is not closed")),
    };
    // Not a message we can read: is it JSON at all? The raw value's extent says where it ends.
    let mut stream = serde_json::Deserializer::from_str(&text[pos..])
        .into_iter::<&serde_json::value::RawValue>();
    let raw = match stream.next() {
        Some(Ok(raw)) => raw.get(),
        Some(Err(e)) => return Err(bad_body("message", e)),
        None => return Err(bad_body("message page", "the array is not closed")),
    };
    let end = pos + stream.byte_offset();
    let reason = format!("unreadable message: {why}");
    let raw = PageStr::within(body, raw);
    Ok((
        end,
        match serde_json::from_str::<IdView>(raw.as_str())
            .ok()
            .and_then(|v| v.id)
        {
            Some(id) => Ok(odd(id, reason, raw)),
            None => Err(Anomaly {
                message_id: None,
                reason,
                raw,
            }),
        },
    ))
}

/// A message with a readable ID that cannot be stored: the row's fields are placeholders.
fn odd(id: u64, reason: String, raw: PageStr) -> FetchedMessage {
    let empty = PageStr::from("");
    FetchedMessage {
        id,
        author_id: 0,
        author_name: empty.clone(),
        author_is_bot: false,
        content: empty.clone(),
        created_at: empty,
        edited_at: None,
        kind: 0,
        reference_message_id: None,
        has_payload: false,
        raw,
        anomaly: Some(reason),
    }
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes
        .get(pos)
        .is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        pos += 1;
    }
    pos
}

/// The archive's columns are SQLite INTEGERs, signed 64-bit: a larger snowflake cannot be
/// stored as what it is, and clamping would make two such IDs one.
fn fits(id: u64) -> bool {
    i64::try_from(id).is_ok()
}

fn fetched(body: &Arc<str>, view: MessageView<'_>, raw: &str) -> Result<FetchedMessage, Anomaly> {
    let raw = PageStr::within(body, raw);
    let Some(id) = view.id else {
        return Err(Anomaly {
            message_id: None,
            reason: "a message without an id".into(),
            raw,
        });
    };
    let too_large = |what: &str, n: u64| {
        format!("{what} {n} is above 2^63-1, the largest the archive's INTEGER columns hold")
    };
    if !fits(id) {
        return Ok(odd(id, too_large("message id", id), raw));
    }
    let Some(author) = view.author else {
        return Ok(odd(id, "a message without an author".into(), raw));
    };
    let Some(author_id) = author.id else {
        return Ok(odd(id, "a message whose author has no id".into(), raw));
    };
    if !fits(author_id) {
        return Ok(odd(id, too_large("author id", author_id), raw));
    }
    let reference_message_id = view.message_reference.and_then(|r| r.message_id);
    if let Some(r) = reference_message_id.filter(|r| !fits(*r)) {
        return Ok(odd(id, too_large("referenced message id", r), raw));
    }
    let text = |t: Option<Text<'_>>| match t {
        None => PageStr::from(""),
        Some(t) => PageStr::from_bytes(body, t.0),
    };
    Ok(FetchedMessage {
        id,
        author_id,
        author_name: text(author.username),
        author_is_bot: author.bot.unwrap_or(false),
        content: text(view.content),
        created_at: text(view.timestamp),
        edited_at: view
            .edited_timestamp
            .map(|t| PageStr::from_bytes(body, t.0)),
        kind: view.kind.unwrap_or(0),
        reference_message_id,
        has_payload: [
            view.attachments,
            view.embeds,
            view.sticker_items,
            view.components,
            view.message_snapshots,
        ]
        .iter()
        .any(|v| v.0)
            || view.poll.is_some(),
        raw,
        anomaly: None,
    })
}

/// A channel (or thread) as listings describe it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ChannelInfo {
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
    /// Discord's channel type: an open set, kept as served (an unknown one is still listed).
    #[serde(rename = "type")]
    pub kind: i32,
    #[serde(default, deserialize_with = "opt_snowflake")]
    pub guild_id: Option<u64>,
    #[serde(default, deserialize_with = "lenient_string")]
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
    #[serde(deserialize_with = "readable_entries")]
    pub threads: Vec<ChannelInfo>,
    #[serde(default)]
    pub has_more: bool,
}

/// `GET /guilds/{id}/channels`: every entry that can be read. One entry this version cannot
/// read (no id, a field of an unexpected shape) is left out with a warning, never the guild.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ChannelList(#[serde(deserialize_with = "readable_entries")] pub Vec<ChannelInfo>);

/// The elements of a JSON array that read as `T`; the others are logged and left out.
fn readable_entries<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(Vec::<Box<serde_json::value::RawValue>>::deserialize(d)?
        .iter()
        .filter_map(|raw| {
            serde_json::from_str(raw.get())
                .inspect_err(|e| {
                    tracing::warn!(
                        "a listed channel cannot be read ({e}); left out: {}",
                        raw.get()
                    )
                })
                .ok()
        })
        .collect())
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
    fn one_pass_parsing_finds_each_message_whatever_the_layout() {
        // Whitespace anywhere, brackets and commas inside strings, nested unknown fields,
        // snowflakes as numbers: each raw text must still be exactly its element.
        let elements = [
            r#"{ "id" : 3 , "author" : { "id" : 1 , "username" : "a]b,c" } , "content" : "[{,}]" ,
                "timestamp" : "t" , "x" : [ [ ] , { "y" : "\"]" } ] }"#,
            r#"{"id":"2","author":{"id":"1","username":"b"},"content":"plain","timestamp":"t"}"#,
            r#"{"content":"tab\there","id":"1","author":{"id":"1","username":"c"},"timestamp":"t","embeds":[{}]}"#,
        ];
        let body = format!(
            " \n[\n  {} ,\r\n\t{},{}  ]\n ",
            elements[0], elements[1], elements[2]
        );
        let page = parse_messages(body.into_bytes()).unwrap();
        assert_eq!(page.returned, 3);
        let raws: Vec<&str> = page.messages.iter().map(|m| m.raw.as_str()).collect();
        assert_eq!(raws, [elements[2], elements[1], elements[0]]);
        let [tab, plain, brackets] = &page.messages[..] else {
            panic!("three messages")
        };
        assert_eq!(
            (brackets.content.as_str(), brackets.author_name.as_str()),
            ("[{,}]", "a]b,c")
        );
        assert_eq!(tab.content, "tab\there");
        assert!(tab.has_payload);
        // Text served without escapes is shared with the page; escaped text is decoded.
        assert!(plain.content.is_shared());
        assert!(!tab.content.is_shared());
    }

    #[test]
    fn broken_arrays_are_malformed_pages() {
        let m = r#"{"id":"1","author":{"id":"1"}}"#;
        for body in [
            format!("[{m} {m}]"),
            format!("[{m},]"),
            format!("[{m}] x"),
            format!("[{m}"),
            m.to_owned(),
            String::new(),
        ] {
            assert!(
                matches!(
                    parse_messages(body.clone().into_bytes()),
                    Err(ApiError::Retry(TransientKind::Malformed(_)))
                ),
                "{body}"
            );
        }
        assert_eq!(parse_messages(b" [ ] ".to_vec()).unwrap().returned, 0);
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
    fn null_in_fields_discord_always_fills_reads_as_empty() {
        let raw = r#"{"id":"5","type":null,"content":null,"timestamp":null,"author":{"id":"1","username":null,"bot":null}}"#;
        let page = parse_messages(format!("[{raw}]").into_bytes()).unwrap();
        let m = &page.messages[0];
        assert_eq!(
            (
                m.content.as_str(),
                m.author_name.as_str(),
                m.created_at.as_str()
            ),
            ("", "", "")
        );
        assert_eq!((m.kind, m.author_is_bot), (0, false));
        assert_eq!(m.raw.as_str(), raw);
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
                Err(ApiError::Retry(TransientKind::Malformed(_)))
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

    /// Discord's documented message types (message.mdx), by the shape each arrives in.
    const DOCUMENTED_TYPES: [(i32, &str); 44] = [
        (0, "DEFAULT"),
        (1, "RECIPIENT_ADD"),
        (2, "RECIPIENT_REMOVE"),
        (3, "CALL"),
        (4, "CHANNEL_NAME_CHANGE"),
        (5, "CHANNEL_ICON_CHANGE"),
        (6, "CHANNEL_PINNED_MESSAGE"),
        (7, "USER_JOIN"),
        (8, "GUILD_BOOST"),
        (9, "GUILD_BOOST_TIER_1"),
        (10, "GUILD_BOOST_TIER_2"),
        (11, "GUILD_BOOST_TIER_3"),
        (12, "CHANNEL_FOLLOW_ADD"),
        (14, "GUILD_DISCOVERY_DISQUALIFIED"),
        (15, "GUILD_DISCOVERY_REQUALIFIED"),
        (16, "GUILD_DISCOVERY_GRACE_PERIOD_INITIAL_WARNING"),
        (17, "GUILD_DISCOVERY_GRACE_PERIOD_FINAL_WARNING"),
        (18, "THREAD_CREATED"),
        (19, "REPLY"),
        (20, "CHAT_INPUT_COMMAND"),
        (21, "THREAD_STARTER_MESSAGE"),
        (22, "GUILD_INVITE_REMINDER"),
        (23, "CONTEXT_MENU_COMMAND"),
        (24, "AUTO_MODERATION_ACTION"),
        (25, "ROLE_SUBSCRIPTION_PURCHASE"),
        (26, "INTERACTION_PREMIUM_UPSELL"),
        (27, "STAGE_START"),
        (28, "STAGE_END"),
        (29, "STAGE_SPEAKER"),
        (31, "STAGE_TOPIC"),
        (32, "GUILD_APPLICATION_PREMIUM_SUBSCRIPTION"),
        (36, "GUILD_INCIDENT_ALERT_MODE_ENABLED"),
        (37, "GUILD_INCIDENT_ALERT_MODE_DISABLED"),
        (38, "GUILD_INCIDENT_REPORT_RAID"),
        (39, "GUILD_INCIDENT_REPORT_FALSE_ALARM"),
        (44, "PURCHASE_NOTIFICATION"),
        (46, "POLL_RESULT"),
        // Not documented when this was written: a type from the future, and one past u8.
        (55, "UNDOCUMENTED_55"),
        (56, "UNDOCUMENTED_56"),
        (99, "UNDOCUMENTED_99"),
        (255, "UNDOCUMENTED_255"),
        (256, "UNDOCUMENTED_256"),
        (70_000, "UNDOCUMENTED_70000"),
        (i32::MAX, "UNDOCUMENTED_I32_MAX"),
    ];

    /// A message of `kind` shaped as Discord sends that type: system messages with empty
    /// content and a mention or a reference, commands with their interaction, replies and
    /// thread starters with a reference, poll results and automod alerts with embeds.
    pub(crate) fn message_of_type(id: u64, kind: i32) -> String {
        let author =
            r#"{"id":"2","username":"ann","global_name":"Ann","discriminator":"0","avatar":null}"#;
        let (content, extra) = match kind {
            0 => ("hello", String::new()),
            1 | 2 => ("", r#","mentions":[{"id":"3","username":"bob"}]"#.to_owned()),
            3 => ("", r#","call":{"participants":["2"],"ended_timestamp":null}"#.to_owned()),
            4 => ("new name", String::new()),
            6 | 12 | 19 | 21 => (
                if kind == 19 { "a reply" } else { "" },
                r#","message_reference":{"type":0,"message_id":"5","channel_id":"9","guild_id":"1"}"#
                    .to_owned(),
            ),
            8..=11 => ("3", String::new()),
            20 | 23 => (
                "",
                r#","interaction_metadata":{"id":"7","type":2,"user":{"id":"2"},"name":"ping"},"application_id":"8","webhook_id":"8""#
                    .to_owned(),
            ),
            24 => (
                "",
                r#","embeds":[{"type":"auto_moderation_message","description":"bad word","fields":[{"name":"rule_name","value":"r"}]}]"#
                    .to_owned(),
            ),
            25 => ("", r#","role_subscription_data":{"role_subscription_listing_id":"1","tier_name":"gold","total_months_subscribed":2,"is_renewal":false}"#.to_owned()),
            27..=31 => ("Town hall", String::new()),
            44 => ("", r#","purchase_notification":{"type":0,"guild_product_purchase":{"listing_id":"1","product_name":"p"}}"#.to_owned()),
            46 => (
                "",
                r#","embeds":[{"type":"poll_result","fields":[{"name":"poll_question_text","value":"Lunch?"},{"name":"victor_answer_text","value":"Pizza"}]}],"message_reference":{"type":0,"message_id":"5"}"#
                    .to_owned(),
            ),
            _ => ("", String::new()),
        };
        let embeds = if extra.contains(r#""embeds""#) {
            ""
        } else {
            r#""embeds":[],"#
        };
        format!(
            r#"{{"id":"{id}","type":{kind},"content":"{content}","channel_id":"9","author":{author},"attachments":[],{embeds}"mentions":[],"mention_roles":[],"pinned":false,"mention_everyone":false,"tts":false,"timestamp":"2024-05-01T12:34:56.789000+00:00","edited_timestamp":null,"flags":0,"components":[]{extra}}}"#
        )
    }

    #[test]
    fn every_documented_message_type_and_unknown_ones_parse_with_exact_raw_json() {
        let elements: Vec<String> = DOCUMENTED_TYPES
            .iter()
            .enumerate()
            .rev()
            .map(|(i, &(kind, _))| message_of_type(100 + i as u64, kind))
            .collect();
        let page = parse_messages(format!("[{}]", elements.join(",")).into_bytes()).unwrap();
        assert_eq!(page.returned, DOCUMENTED_TYPES.len());
        assert!(page.unplaced.is_empty());
        for (m, (&(kind, name), raw)) in page
            .messages
            .iter()
            .zip(DOCUMENTED_TYPES.iter().zip(elements.iter().rev()))
        {
            assert_eq!(m.anomaly, None, "{name}");
            assert_eq!(m.kind, kind, "{name}");
            assert_eq!(m.raw.as_str(), raw, "{name}");
            assert_eq!((m.author_id, m.author_name.as_str()), (2, "ann"), "{name}");
        }
        let by_kind = |k: i32| page.messages.iter().find(|m| m.kind == k).unwrap();
        assert_eq!(by_kind(19).reference_message_id, Some(5));
        assert!(by_kind(46).has_payload, "a poll result carries its embed");
        assert!(by_kind(24).has_payload);
        assert!(!by_kind(7).has_payload);
    }

    /// Each value that used to fail its whole page: now the page is read, and what cannot be
    /// stored is an anomaly with its raw text, in place (its ID moves the cursor) when it has one.
    #[test]
    fn one_odd_message_never_fails_its_page() {
        let good = |id: u64| message_of_type(id, 0);
        let cases: [(&str, String, Option<&str>); 8] = [
            (
                "type 256",
                r#"{"id":"20","type":256,"content":"x","author":{"id":"2"}}"#.into(),
                None,
            ),
            (
                "unpaired surrogate",
                r#"{"id":"20","type":0,"content":"half \ud83d an emoji","author":{"id":"2","username":"\udc00"}}"#.into(),
                None,
            ),
            (
                "author without id",
                r#"{"id":"20","type":0,"content":"x","author":{"username":"ghost"}}"#.into(),
                Some("author has no id"),
            ),
            (
                "no author",
                r#"{"id":"20","type":0,"content":"x"}"#.into(),
                Some("without an author"),
            ),
            (
                "type past int32",
                r#"{"id":"20","type":1099511627776,"content":"x","author":{"id":"2"}}"#.into(),
                Some("unreadable message"),
            ),
            (
                "id past 2^63-1",
                r#"{"id":"9223372036854775808","content":"x","author":{"id":"2"}}"#.into(),
                Some("above 2^63-1"),
            ),
            (
                "author id past 2^63-1",
                r#"{"id":"20","content":"x","author":{"id":"18446744073709551615"}}"#.into(),
                Some("author id 18446744073709551615 is above"),
            ),
            (
                "a field of another shape",
                r#"{"id":"20","content":{"text":"x"},"author":{"id":"2"}}"#.into(),
                Some("unreadable message"),
            ),
        ];
        for (what, odd, anomaly) in cases {
            let body = format!("[{},{odd},{}]", good(30), good(10));
            let page = parse_messages(body.into_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(page.returned, 3, "{what}");
            let ids: Vec<u64> = page.messages.iter().map(|m| m.id).collect();
            let odd_id = if what == "id past 2^63-1" {
                1 << 63
            } else {
                20
            };
            let mut want = vec![10, odd_id, 30];
            want.sort();
            assert_eq!(ids, want, "{what}");
            let m = page.messages.iter().find(|m| m.id == odd_id).unwrap();
            assert_eq!(
                m.raw.as_str(),
                odd,
                "{what}: the raw text is what was served"
            );
            match anomaly {
                None => assert_eq!(m.anomaly, None, "{what}"),
                Some(why) => assert!(
                    m.anomaly.as_deref().is_some_and(|a| a.contains(why)),
                    "{what}: {:?}",
                    m.anomaly
                ),
            }
            assert!(page
                .messages
                .iter()
                .filter(|m| m.id != odd_id)
                .all(|m| m.anomaly.is_none()));
        }
        let page = parse_messages(
            br#"[{"id":"20","type":256,"content":"half \ud83d","author":{"id":"2","username":"\udc00x"}}]"#
                .to_vec(),
        )
        .unwrap();
        let m = &page.messages[0];
        assert_eq!((m.kind, m.content.as_str()), (256, "half \u{FFFD}"));
        assert_eq!(m.author_name, "\u{FFFD}x");
    }

    #[test]
    fn an_element_without_a_readable_id_is_reported_not_placed() {
        for odd in [
            r#"{"type":0,"content":"no id","author":{"id":"2"}}"#,
            r#"{"id":"not-a-number","author":{"id":"2"}}"#,
            r#"{"id":null,"author":{"id":"2"}}"#,
            r#"{"id":"99999999999999999999","author":{"id":"2"}}"#,
            "1",
            r#""a string""#,
            "null",
            "[]",
        ] {
            let body = format!(
                "[{}, {odd} ,{}]",
                message_of_type(30, 0),
                message_of_type(10, 19)
            );
            let page = parse_messages(body.into_bytes()).unwrap_or_else(|e| panic!("{odd}: {e}"));
            assert_eq!(page.returned, 3, "{odd}");
            let ids: Vec<u64> = page.messages.iter().map(|m| m.id).collect();
            assert_eq!(ids, [10, 30], "{odd}");
            assert_eq!(page.unplaced.len(), 1, "{odd}");
            assert_eq!(page.unplaced[0].raw.as_str(), odd);
            assert_eq!(page.unplaced[0].message_id, None);
        }
    }

    #[test]
    fn a_null_body_is_an_empty_page() {
        for body in ["null", " null\n"] {
            let page = parse_messages(body.as_bytes().to_vec()).unwrap();
            assert_eq!((page.returned, page.messages.len()), (0, 0));
        }
    }

    #[test]
    fn forwards_polls_and_voice_messages_carry_a_payload() {
        for extra in [
            r#""message_reference":{"type":1,"message_id":"5","channel_id":"8"},"message_snapshots":[{"message":{"content":"fwd","type":0,"timestamp":"t"}}]"#,
            r#""poll":{"question":{"text":"Lunch?"},"answers":[{"answer_id":1,"poll_media":{"text":"Pizza"}}],"expiry":null}"#,
            r#""flags":8192,"attachments":[{"id":"1","filename":"voice-message.ogg","duration_secs":2.5,"waveform":"AAA="}]"#,
            r#""flags":32768,"components":[{"type":10,"content":"text in a component"}]"#,
        ] {
            let raw =
                format!(r#"{{"id":"7","type":0,"content":"","author":{{"id":"2"}},{extra}}}"#);
            let page = parse_messages(format!("[{raw}]").into_bytes()).unwrap();
            assert!(page.messages[0].has_payload, "{extra}");
            assert_eq!(page.messages[0].raw.as_str(), raw);
        }
    }

    #[test]
    fn channel_listings_keep_unknown_types_and_leave_out_unreadable_entries() {
        let body = br#"[{"id":"1","type":0,"name":"general"},
            {"id":"2","type":300,"name":"future \ud83d"},
            {"type":0,"name":"no id"},
            {"id":"4","type":17}]"#;
        let list: ChannelList = parse_json("channels", body).unwrap();
        let kinds: Vec<(u64, i32)> = list.0.iter().map(|c| (c.id, c.kind)).collect();
        assert_eq!(kinds, [(1, 0), (2, 300), (4, 17)]);
        assert_eq!(list.0[1].name.as_deref(), Some("future \u{FFFD}"));
        let threads: ThreadList = parse_json(
            "threads",
            br#"{"threads":[{"id":"9","type":11},{"id":"x","type":11}],"has_more":false}"#,
        )
        .unwrap();
        assert_eq!(threads.threads.len(), 1);
    }
}
