//! The seed's message filters: messages they match advance the checkpoint but are not stored.

use crate::config::{FilterSettings, SkipEmpty};
use crate::discord::FetchedMessage;
use crate::stats::Stats;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    Bot,
    Blacklisted,
    Empty,
    Command,
}

/// Which filter (first match, in the seed's order) drops this message, if any.
///
/// "Empty" (`skip_empty = true`) means nothing to keep: no text once whitespace is trimmed and
/// no payload (attachment, embed, sticker, poll, forwarded snapshot, component), so forwards,
/// polls, voice messages and attachment-only posts are kept. `skip_empty = "text"` is the
/// seed's rule: no text, whatever else the message carries.
pub fn classify(m: &FetchedMessage, f: &FilterSettings) -> Option<Skip> {
    let no_text = || m.content.trim().is_empty();
    let empty = match f.skip_empty {
        SkipEmpty::Off => false,
        SkipEmpty::Nothing => !m.has_payload && no_text(),
        SkipEmpty::Text => no_text(),
    };
    if f.skip_bots && m.author_is_bot {
        Some(Skip::Bot)
    } else if f.blacklist.contains(&m.author_id) {
        Some(Skip::Blacklisted)
    } else if empty {
        Some(Skip::Empty)
    } else if !f.command_prefix.is_empty() && m.content.starts_with(f.command_prefix.as_str()) {
        Some(Skip::Command)
    } else {
        None
    }
}

/// A message from a person with nothing in it: without the Message Content intent, Discord
/// sends every such message this way (type 0 default or 19 reply, not a bot, no text, no
/// payload: a forward, a poll or a voice message carries its own and proves nothing).
pub fn looks_intentless(m: &FetchedMessage) -> bool {
    !m.author_is_bot && matches!(m.kind, 0 | 19) && m.content.is_empty() && !m.has_payload
}

impl Skip {
    pub fn count(self, stats: &mut Stats) {
        match self {
            Skip::Bot => stats.skipped_bot_messages += 1,
            Skip::Blacklisted => stats.skipped_blacklisted += 1,
            Skip::Empty => stats.skipped_empty_messages += 1,
            Skip::Command => stats.skipped_commands += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::page::parse_messages;

    fn message(author: u64, bot: bool, content: &str) -> FetchedMessage {
        let body = serde_json::json!([{
            "id": "10", "type": 0, "content": content, "timestamp": "2024-05-01T12:34:56.789000+00:00",
            "author": {"id": author.to_string(), "username": "u", "bot": bot}
        }]);
        parse_messages(body.to_string().into_bytes())
            .unwrap()
            .messages
            .remove(0)
    }

    fn filters() -> FilterSettings {
        FilterSettings {
            skip_bots: true,
            skip_empty: SkipEmpty::Nothing,
            command_prefix: "!".into(),
            blacklist: [666].into_iter().collect(),
        }
    }

    #[test]
    fn seed_order_and_rules() {
        let f = filters();
        assert_eq!(classify(&message(1, true, "!cmd"), &f), Some(Skip::Bot));
        assert_eq!(
            classify(&message(666, false, ""), &f),
            Some(Skip::Blacklisted)
        );
        assert_eq!(classify(&message(1, false, " \n\t"), &f), Some(Skip::Empty));
        assert_eq!(
            classify(&message(1, false, "!help"), &f),
            Some(Skip::Command)
        );
        assert_eq!(classify(&message(1, false, "hi !help"), &f), None);
        assert_eq!(classify(&message(1, false, "héllo"), &f), None);
    }

    #[test]
    fn each_filter_can_be_turned_off() {
        let f = FilterSettings {
            skip_bots: false,
            skip_empty: SkipEmpty::Off,
            command_prefix: String::new(),
            blacklist: Default::default(),
        };
        for m in [
            message(1, true, "x"),
            message(666, false, "x"),
            message(1, false, ""),
            message(1, false, "!x"),
        ] {
            assert_eq!(classify(&m, &f), None);
        }
    }

    fn shaped(extra: serde_json::Value) -> FetchedMessage {
        let mut body = serde_json::json!({
            "id": "10", "type": 0, "content": "", "timestamp": "2024-05-01T12:34:56.789000+00:00",
            "author": {"id": "1", "username": "u"}
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        parse_messages(format!("[{body}]").into_bytes())
            .unwrap()
            .messages
            .remove(0)
    }

    /// Forwards, polls, voice messages, stickers, components and attachment-only posts carry
    /// no `content`: "empty" keeps them; "text" (the seed's rule) drops them.
    #[test]
    fn empty_means_nothing_to_keep_and_text_is_the_seeds_rule() {
        let carriers = [
            serde_json::json!({"message_reference": {"type": 1, "message_id": "5"},
                "message_snapshots": [{"message": {"content": "fwd", "type": 0}}]}),
            serde_json::json!({"poll": {"question": {"text": "q?"}, "answers": []}}),
            serde_json::json!({"flags": 8192, "attachments": [{"id": "1", "filename": "voice-message.ogg",
                "duration_secs": 3.2, "waveform": "AAAA"}]}),
            serde_json::json!({"embeds": [{"title": "t"}]}),
            serde_json::json!({"sticker_items": [{"id": "1", "name": "s", "format_type": 1}]}),
            serde_json::json!({"flags": 32768, "components": [{"type": 10, "content": "v2 text"}]}),
        ];
        let text_rule = FilterSettings {
            skip_empty: SkipEmpty::Text,
            ..filters()
        };
        for extra in carriers {
            let m = shaped(extra.clone());
            assert_eq!(classify(&m, &filters()), None, "{extra}");
            assert!(!looks_intentless(&m), "{extra}");
            assert_eq!(classify(&m, &text_rule), Some(Skip::Empty), "{extra}");
        }
        // Nothing at all: empty under both rules, and what a missing intent looks like.
        let bare = shaped(serde_json::json!({"attachments": [], "poll": null}));
        assert_eq!(classify(&bare, &filters()), Some(Skip::Empty));
        assert_eq!(classify(&bare, &text_rule), Some(Skip::Empty));
        assert!(looks_intentless(&bare));
    }
}
