//! Who gets the next global token: the channel with the most work left, estimated from
//! snowflake time and the density of the pages seen so far. Pure: no I/O, no clock.
//!
//! Under a binding global limit, first-come-first-served shares tokens evenly between
//! channels, so the largest channel gets its 1/n-th share until the small ones are done and
//! then pages alone at its own bucket's rate: the end of the run is that one channel. Giving
//! each token to the waiting request whose channel has the most pages left (longest remaining
//! work first) keeps the largest channel at its bucket's rate from the start, and lets every
//! channel finish close to the same time. Snowflakes carry their creation time, so a channel's
//! remaining history is a span of time; the pages it has already returned say how many
//! messages that time holds.

use crate::time::snowflake_ms;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Messages in a full page (Discord's largest `limit`).
const PAGE: u64 = crate::discord::PAGE_LIMIT as u64;

/// How urgent a request is: the higher, the sooner it gets a global token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u64);

impl Priority {
    /// Discovery and other lookups: few, and every channel waits on them.
    pub const LOOKUP: Priority = Priority(u64::MAX);
    /// A channel not sized yet (no page seen): its first page comes before any channel's
    /// further pages, so every channel is sized early.
    pub const UNSIZED: Priority = Priority(u64::MAX - 1);
    /// A page of an archived-thread listing, read while channels already page. It ranks as a
    /// channel with this many pages left: below the channels long enough to end the run last
    /// (at a bucket of 5 requests per 5 s, 50 pages are 50 s), which ask at most their bucket's
    /// pace and so take few tokens from discovery, and above all the others, which can wait
    /// for the threads a listing may reveal. As [`Priority::LOOKUP`], hundreds of listings
    /// in a big guild would hold the largest channel back for as long as they take.
    pub const LISTING: Priority = Priority(50);

    /// A channel with `pages` left (capped below [`Priority::UNSIZED`]).
    pub fn pages(pages: u64) -> Priority {
        Priority(pages.min(u64::MAX - 2))
    }
}

/// Message density of one channel, from the pages it returned: messages per millisecond of
/// snowflake time, refined with every page.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Density {
    messages: u64,
    /// Snowflake milliseconds the observed pages spanned (each at least 1 ms).
    ms: u64,
}

impl Density {
    /// Records a page of `count` messages from `first` to `last` (IDs, oldest and newest).
    pub fn observe(&mut self, first: u64, last: u64, count: usize) {
        if count == 0 {
            return;
        }
        let span = snowflake_ms(last).saturating_sub(snowflake_ms(first));
        self.messages += count as u64;
        // A page's messages span one gap fewer than they are: scale it up so that a run of
        // pages adds up to the time they cover, and a page within one millisecond is not
        // infinitely dense.
        let gaps = (count as u64).saturating_sub(1).max(1);
        self.ms += (span.saturating_mul(count as u64) / gaps).max(1);
    }

    /// Whether any page was seen.
    pub fn is_known(&self) -> bool {
        self.messages > 0
    }

    /// Estimated messages between two IDs (`None` before any page was seen).
    pub fn messages_between(&self, after: u64, until: u64) -> Option<u64> {
        if !self.is_known() {
            return None;
        }
        let ms = snowflake_ms(until).saturating_sub(snowflake_ms(after));
        let messages = u128::from(ms) * u128::from(self.messages) / u128::from(self.ms.max(1));
        Some(u64::try_from(messages).unwrap_or(u64::MAX))
    }

    /// Estimated pages between two IDs (`None` before any page was seen).
    pub fn pages_between(&self, after: u64, until: u64) -> Option<u64> {
        self.messages_between(after, until)
            .map(|messages| messages.div_ceil(PAGE))
    }
}

/// What one channel still has to page: its spans' cursors and ends, and its density.
#[derive(Clone, Debug, Default)]
pub struct ChannelWork {
    pub density: Density,
    /// Per span: `(cursor, end)`; `end` is the span's last ID, or the listed newest message
    /// for the open span (`None`: unknown). A finished span is removed.
    spans: Vec<Option<(u64, Option<u64>)>>,
}

impl ChannelWork {
    /// Adds a span to page from `cursor` to `end`; returns its index for [`Self::advance`].
    pub fn add_span(&mut self, cursor: u64, end: Option<u64>) -> usize {
        self.spans.push(Some((cursor, end)));
        self.spans.len() - 1
    }

    /// The span moved its cursor.
    pub fn advance(&mut self, span: usize, cursor: u64) {
        if let Some(Some((at, _))) = self.spans.get_mut(span) {
            *at = (*at).max(cursor);
        }
    }

    /// The span is done (or stopped).
    pub fn finish(&mut self, span: usize) {
        if let Some(slot) = self.spans.get_mut(span) {
            *slot = None;
        }
    }

    /// Estimated pages left over every open span (`None`: not sized yet, or an open span
    /// with no known end).
    pub fn remaining_pages(&self) -> Option<u64> {
        self.spans
            .iter()
            .flatten()
            .try_fold(0u64, |sum, (cursor, end)| {
                let end = (*end)?;
                let pages = self.density.pages_between(*cursor, end.max(*cursor))?;
                Some(sum.saturating_add(pages))
            })
    }

    /// Estimated messages left over every open span (`None` as for
    /// [`Self::remaining_pages`]): what the progress view's finish time is computed from.
    pub fn remaining_messages(&self) -> Option<u64> {
        self.spans
            .iter()
            .flatten()
            .try_fold(0u64, |sum, (cursor, end)| {
                let end = (*end)?;
                let messages = self.density.messages_between(*cursor, end.max(*cursor))?;
                Some(sum.saturating_add(messages))
            })
    }

    /// The priority of this channel's next request.
    pub fn priority(&self) -> Priority {
        match self.remaining_pages() {
            Some(pages) => Priority::pages(pages),
            None if !self.density.is_known() => Priority::UNSIZED,
            // Sized, but an open span has no known end: at least what it has left of the
            // known spans, and one more page.
            None => Priority::pages(1),
        }
    }
}

/// The order channels start in when they cannot all run at once: the longest history first,
/// by snowflake time from the channel's creation to the newest message its listing named
/// (`id_and_newest` gives both). A channel started late cannot catch up: one that holds a
/// third of the guild must not wait behind a hundred small ones. Channels without a listed
/// newest message go last; equals keep their order.
pub fn start_order<J>(
    mut jobs: Vec<J>,
    id_and_newest: impl Fn(&J) -> (u64, Option<u64>),
) -> Vec<J> {
    jobs.sort_by_key(|job| {
        let (id, newest) = id_and_newest(job);
        Reverse(newest.map_or(0, |n| snowflake_ms(n).saturating_sub(snowflake_ms(id))))
    });
    jobs
}

/// Waiters for global tokens, the highest priority first, and among equals the first come.
pub struct TokenQueue<W> {
    heap: BinaryHeap<Entry<W>>,
    arrivals: u64,
}

struct Entry<W> {
    priority: Priority,
    arrival: Reverse<u64>,
    waiter: W,
}

impl<W> PartialEq for Entry<W> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<W> Eq for Entry<W> {}

impl<W> PartialOrd for Entry<W> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<W> Ord for Entry<W> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.priority, self.arrival).cmp(&(other.priority, other.arrival))
    }
}

impl<W> Default for TokenQueue<W> {
    fn default() -> Self {
        TokenQueue {
            heap: BinaryHeap::new(),
            arrivals: 0,
        }
    }
}

impl<W> TokenQueue<W> {
    pub fn push(&mut self, priority: Priority, waiter: W) {
        self.arrivals += 1;
        self.heap.push(Entry {
            priority,
            arrival: Reverse(self.arrivals),
            waiter,
        });
    }

    /// The waiter that gets the next token.
    pub fn pop(&mut self) -> Option<W> {
        self.heap.pop().map(|e| e.waiter)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::snowflake_from_ms;

    #[test]
    fn thread_listings_yield_to_long_channels_only() {
        assert!(Priority::LOOKUP > Priority::UNSIZED);
        assert!(
            Priority::UNSIZED > Priority::LISTING,
            "first pages size channels"
        );
        assert!(Priority::pages(51) > Priority::LISTING);
        assert!(Priority::pages(49) < Priority::LISTING);
    }

    const T0: u64 = 1_600_000_000_000;

    fn id(ms: u64) -> u64 {
        snowflake_from_ms(T0 + ms)
    }

    #[test]
    fn density_from_pages_estimates_the_pages_left() {
        let mut d = Density::default();
        assert_eq!(d.pages_between(id(0), id(1_000)), None);
        // 100 messages one second apart: 100 s of history per page.
        d.observe(id(0), id(99_000), 100);
        let cases = [
            (0, 100_000, 1),
            (0, 1_000_000, 10),
            (0, 1_050_000, 11),
            (500_000, 500_000, 0),
            (0, 10_000_000, 100),
        ];
        for (from, to, pages) in cases {
            assert_eq!(
                d.pages_between(id(from), id(to)),
                Some(pages),
                "{from}..{to}"
            );
        }
        // A denser second page refines the estimate: 200 messages over 110 s.
        d.observe(id(100_000), id(109_900), 100);
        assert_eq!(d.pages_between(id(0), id(1_100_000)), Some(20));
    }

    #[test]
    fn a_page_within_one_millisecond_is_dense_not_infinite() {
        let mut d = Density::default();
        d.observe(id(5), id(5), 100);
        assert_eq!(d.pages_between(id(0), id(1_000)), Some(1_000));
        d.observe(id(5), id(5), 0);
        assert_eq!(d.pages_between(id(0), id(1_000)), Some(1_000));
    }

    #[test]
    fn a_channels_priority_is_its_pages_left_over_every_span() {
        let mut work = ChannelWork::default();
        let first = work.add_span(id(0), Some(id(1_000_000)));
        assert_eq!(work.priority(), Priority::UNSIZED);
        work.density.observe(id(0), id(99_000), 100);
        work.advance(first, id(99_000));
        // 901 s left at one message a second: 10 pages.
        assert_eq!(work.priority(), Priority::pages(10));
        let slice = work.add_span(id(2_000_000), Some(id(3_000_000)));
        assert_eq!(work.remaining_pages(), Some(20));
        work.finish(first);
        assert_eq!(work.priority(), Priority::pages(10));
        work.advance(slice, id(2_500_000));
        assert_eq!(work.priority(), Priority::pages(5));
        assert_eq!(work.remaining_messages(), Some(500));
        // A cursor never moves back.
        work.advance(slice, id(2_000_000));
        assert_eq!(work.priority(), Priority::pages(5));
        work.finish(slice);
        assert_eq!(work.priority(), Priority::pages(0));
    }

    #[test]
    fn an_open_span_with_no_known_end_keeps_a_low_priority_once_sized() {
        let mut work = ChannelWork::default();
        work.add_span(id(0), None);
        assert_eq!(work.priority(), Priority::UNSIZED);
        work.density.observe(id(0), id(99_000), 100);
        assert_eq!(work.priority(), Priority::pages(1));
    }

    #[test]
    fn tokens_go_to_the_most_work_first_and_equals_in_arrival_order() {
        let mut q = TokenQueue::default();
        let arrivals = [
            ("small", Priority::pages(3)),
            ("big", Priority::pages(300)),
            ("unsized", Priority::UNSIZED),
            ("small-2", Priority::pages(3)),
            ("lookup", Priority::LOOKUP),
            ("middle", Priority::pages(40)),
        ];
        for (name, p) in arrivals {
            q.push(p, name);
        }
        assert_eq!(q.len(), 6);
        let order: Vec<&str> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            ["lookup", "unsized", "big", "middle", "small", "small-2"]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn the_longest_history_starts_first_and_unlisted_channels_last() {
        // (channel id, listed newest message, name)
        let jobs = [
            (id(0), Some(id(1_000)), "short"),
            (id(0), None, "unlisted"),
            (id(0), Some(id(900_000)), "long"),
            (id(500_000), Some(id(900_000)), "late-born"),
            (id(0), Some(id(1_000)), "short-2"),
        ];
        let order: Vec<&str> = start_order(jobs.to_vec(), |j| (j.0, j.1))
            .into_iter()
            .map(|j| j.2)
            .collect();
        assert_eq!(order, ["long", "late-born", "short", "short-2", "unlisted"]);
    }

    #[test]
    fn priorities_never_reach_the_reserved_levels() {
        assert!(Priority::pages(u64::MAX) < Priority::UNSIZED);
        assert!(Priority::UNSIZED < Priority::LOOKUP);
    }
}
