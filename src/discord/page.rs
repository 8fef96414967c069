//! Response bodies parsed once: each message's fields for the archive plus its exact raw JSON.
//!
//! The raw text of every message is a range of the response body, found in the same pass that
//! reads its fields, never a re-serialization, so stage 2 sees exactly what Discord sent,
//! including fields this version does not know. The fields we index are read with a lenient view rather
//! than twilight-model's full `Message`: one unexpected field shape in a future API version must
//! not cost us the message, and the full model costs several times more per message.

use super::error::ApiError;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::sync::Arc;

/// Text from a page body. The raw JSON of a message, and every string field served without
/// an escape, is a range of the body shared by the whole page; only escaped strings are decoded
/// into their own allocation. Rows are then built, and bound to SQLite, without copying text
/// message by message.
#[derive(Clone)]
pub struct PageStr(Repr);

#[derive(Clone)]
enum Repr {
    Slice {
        body: Arc<str>,
        start: u32,
        end: u32,
    },
    Owned(Box<str>),
}

impl PageStr {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Slice { body, start, end } => &body[*start as usize..*end as usize],
            Repr::Owned(text) => text,
        }
    }

    /// `text` as a range of `body` when it lies inside it, otherwise copied.
    fn within(body: &Arc<str>, text: &str) -> PageStr {
        let base = body.as_ptr() as usize;
        let start = (text.as_ptr() as usize).wrapping_sub(base);
        let end = start
            .checked_add(text.len())
            .filter(|end| *end <= body.len());
        match (u32::try_from(start), end.map(u32::try_from)) {
            (Ok(start), Some(Ok(end))) => PageStr(Repr::Slice {
                body: body.clone(),
                start,
                end,
            }),
            _ => PageStr::from(text),
        }
    }

    fn from_cow(body: &Arc<str>, text: Cow<'_, str>) -> PageStr {
        match text {
            Cow::Borrowed(text) => PageStr::within(body, text),
            Cow::Owned(text) => PageStr(Repr::Owned(text.into_boxed_str())),
        }
    }
}

impl From<&str> for PageStr {
    fn from(text: &str) -> PageStr {
        PageStr(Repr::Owned(text.into()))
    }
}

impl std::ops::Deref for PageStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for PageStr {
    fn eq(&self, other: &PageStr) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for PageStr {}

impl PartialEq<&str> for PageStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for PageStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl std::fmt::Debug for PageStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for PageStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    pub kind: u8,
    pub reference_message_id: Option<u64>,
    /// Attachments, embeds, stickers or components: what an empty `content` may still carry.
    pub has_payload: bool,
    /// The message object exactly as served.
    pub raw: PageStr,
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
    // Fields Discord always fills may come missing or null from another server: read as
    // empty rather than failing the whole page (the raw JSON keeps what was sent).
    #[serde(borrow, default, deserialize_with = "nullable_str")]
    content: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "nullable_str")]
    timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    edited_timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: u8,
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
}

/// Whether a JSON array (or null) has any element, read without keeping the elements.
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

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
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
    #[serde(deserialize_with = "snowflake")]
    id: u64,
    #[serde(borrow, default, deserialize_with = "nullable_str")]
    username: Cow<'a, str>,
    #[serde(default, deserialize_with = "nullable")]
    bot: bool,
}

/// A value that may be null: read as its default.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Text that may be null (read as empty), borrowed from the page when it has no escapes.
fn nullable_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Cow<'a, str>, D::Error> {
    struct Visit;
    impl<'de> Visitor<'de> for Visit {
        type Value = Cow<'de, str>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }

        fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(s))
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(s.to_owned()))
        }

        fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(s))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(""))
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(""))
        }
    }
    d.deserialize_any(Visit)
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
///
/// One pass over the body: each element of the array is read as a view of the fields we index
/// while the stream reports where it ends, so the raw text is a range of the body and nothing
/// is scanned twice.
pub fn parse_messages(body: Vec<u8>) -> Result<Page, ApiError> {
    let body: Arc<str> = String::from_utf8(body)
        .map_err(|e| bad_body("message page (not UTF-8)", e))?
        .into();
    let text: &str = &body;
    let bytes = text.as_bytes();
    let malformed = |what: &str| bad_body("message page", what);
    let mut pos = skip_ws(bytes, 0);
    if bytes.get(pos) != Some(&b'[') {
        return Err(malformed("not a JSON array"));
    }
    pos = skip_ws(bytes, pos + 1);
    let mut messages = Vec::with_capacity(usize::from(super::PAGE_LIMIT));
    if bytes.get(pos) == Some(&b']') {
        pos += 1;
    } else {
        loop {
            let mut stream =
                serde_json::Deserializer::from_str(&text[pos..]).into_iter::<MessageView<'_>>();
            let view = match stream.next() {
                Some(view) => view.map_err(|e| bad_body("message", e))?,
                None => return Err(malformed("the array is not closed")),
            };
            let end = pos + stream.byte_offset();
            messages.push(fetched(&body, view, &text[pos..end]));
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
    let returned = messages.len();
    // Discord promises newest first; sorting makes a misbehaving server harmless (cursor math
    // relies on ascending order).
    messages.reverse();
    if !messages.windows(2).all(|w| w[0].id < w[1].id) {
        messages.sort_by_key(|m| m.id);
        messages.dedup_by_key(|m| m.id);
    }
    Ok(Page { returned, messages })
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

fn fetched(body: &Arc<str>, view: MessageView<'_>, raw: &str) -> FetchedMessage {
    FetchedMessage {
        id: view.id,
        author_id: view.author.id,
        author_name: PageStr::from_cow(body, view.author.username),
        author_is_bot: view.author.bot,
        content: PageStr::from_cow(body, view.content),
        created_at: PageStr::from_cow(body, view.timestamp),
        edited_at: view.edited_timestamp.map(|t| PageStr::from_cow(body, t)),
        kind: view.kind,
        reference_message_id: view.message_reference.and_then(|r| r.message_id),
        has_payload: [
            view.attachments,
            view.embeds,
            view.sticker_items,
            view.components,
        ]
        .iter()
        .any(|v| v.0),
        raw: PageStr::within(body, raw),
    }
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
        assert!(matches!(plain.content.0, Repr::Slice { .. }));
        assert!(matches!(tab.content.0, Repr::Owned(_)));
    }

    #[test]
    fn text_outside_the_page_body_is_copied_not_referenced() {
        let body: Arc<str> = "abc".into();
        let elsewhere = String::from("xyz");
        let text = PageStr::within(&body, &elsewhere);
        assert!(matches!(text.0, Repr::Owned(_)));
        assert_eq!(text, "xyz");
        assert!(matches!(
            PageStr::within(&body, &body[1..]).0,
            Repr::Slice { .. }
        ));
    }

    #[test]
    fn broken_arrays_are_malformed_pages() {
        let m = r#"{"id":"1","author":{"id":"1"}}"#;
        for body in [
            format!("[{m} {m}]"),
            format!("[{m},]"),
            format!("[{m}] x"),
            format!("[{m}"),
            "[1]".to_owned(),
            r#"["a"]"#.to_owned(),
            m.to_owned(),
            String::new(),
        ] {
            assert!(
                matches!(
                    parse_messages(body.clone().into_bytes()),
                    Err(ApiError::Transient(_))
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
