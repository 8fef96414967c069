//! The seed's message filters: messages they match advance the checkpoint but are not stored.

use crate::config::FilterSettings;
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
/// "Empty" is the seed's rule: no text once whitespace is trimmed (system messages, and
/// attachment-only posts, which `skip_empty = false` keeps).
pub fn classify(m: &FetchedMessage, f: &FilterSettings) -> Option<Skip> {
    if f.skip_bots && m.author_is_bot {
        Some(Skip::Bot)
    } else if f.blacklist.contains(&m.author_id) {
        Some(Skip::Blacklisted)
    } else if f.skip_empty && m.content.trim().is_empty() {
        Some(Skip::Empty)
    } else if !f.command_prefix.is_empty() && m.content.starts_with(f.command_prefix.as_str()) {
        Some(Skip::Command)
    } else {
        None
    }
}

/// A message from a person with nothing in it: without the Message Content intent, Discord
/// sends every such message this way (type 0 default or 19 reply, not a bot, no text, no
/// attachments or embeds).
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
            skip_empty: true,
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
            skip_empty: false,
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
}
