//! Text shared from a response body: each message's raw JSON, and its strings served without
//! escapes, are ranges of one page body, from the HTTP layer (which parses pages) down to
//! SQLite's bind (which stores them). `discord` and `storage` both use it; neither depends on
//! the other for it.

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
    pub(crate) fn within(body: &Arc<str>, text: &str) -> PageStr {
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

    /// Text read as bytes (see `discord::page`'s `Text`): a range of `body` when borrowed from it, otherwise
    /// decoded, any unpaired surrogate replaced.
    pub(crate) fn from_bytes(body: &Arc<str>, bytes: Cow<'_, [u8]>) -> PageStr {
        match bytes {
            Cow::Borrowed(bytes) => {
                let start = (bytes.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
                match start
                    .checked_add(bytes.len())
                    .and_then(|end| body.get(start..end))
                {
                    Some(text) => PageStr::within(body, text),
                    None => PageStr::from(from_wtf8(bytes.to_vec()).as_str()),
                }
            }
            Cow::Owned(bytes) => PageStr(Repr::Owned(from_wtf8(bytes).into_boxed_str())),
        }
    }

    /// Whether the text is a range of a shared body (not a copy of its own).
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Repr::Slice { .. })
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

/// Decoded WTF-8 (UTF-8 that may hold surrogate code points) as UTF-8: each surrogate becomes
/// one U+FFFD, as an unpaired UTF-16 surrogate cannot be text.
pub(crate) fn from_wtf8(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let bytes = e.into_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                // A surrogate U+D800..U+DFFF encodes as ED A0..BF 80..BF.
                if bytes[i] == 0xED
                    && bytes.get(i + 1).is_some_and(|b| (0xA0..=0xBF).contains(b))
                    && bytes.get(i + 2).is_some_and(|b| (0x80..=0xBF).contains(b))
                {
                    out.extend_from_slice("\u{FFFD}".as_bytes());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_outside_the_page_body_is_copied_not_referenced() {
        let body: Arc<str> = "abc".into();
        let elsewhere = String::from("xyz");
        let text = PageStr::within(&body, &elsewhere);
        assert!(!text.is_shared());
        assert_eq!(text, "xyz");
        assert!(PageStr::within(&body, &body[1..]).is_shared());
    }
}
