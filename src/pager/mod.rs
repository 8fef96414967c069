//! The pager: how one span of a channel is paged, oldest first, with no I/O at all.
//!
//! A [`SpanPager`] takes pages and returns what to do next ([`Action`]): ask for the page
//! after a cursor, commit a batch with what it may [`claim`](claim::Claim), or stop, and why.
//! The fetcher actor is a thin driver around it that does the requests and the commits (the
//! shape of quinn-proto's `Connection` and the `quinn` crate). Every hard case the end-to-end
//! tests met is a row of the table tests in `tests.rs`.
//!
//! - [`claim`]: what a batch's checkpoint and slices may say, and how they fold into the
//!   stored checkpoint (the writer applies exactly that).
//! - [`plan`]: which spans to page after a resume, or after a first page shows a long channel.

pub mod claim;
pub mod plan;
#[cfg(test)]
mod tests;

use crate::time::snowflake_ms;
use claim::{Claim, Flush};
use std::vec;

/// Where a range's progress is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// The channel's fetched prefix: the checkpoint moves with it, unless the range starts
    /// past the checkpoint (an explicit `--after`), which would claim a gap as fetched.
    Prefix { extends: bool },
    /// A time slice ahead of the checkpoint, recorded in `fetch_slices` under its start.
    Slice { after: u64 },
}

/// A contiguous part of a channel's history to page through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Exclusive start: the first page is `after=cursor`.
    pub cursor: u64,
    /// Inclusive end; `None` runs to the newest message.
    pub until: Option<u64>,
    pub lane: Lane,
}

/// What the pager needs of a message: its ID. (Whether it is kept is the driver's to say,
/// see [`SpanPager::on_page`].)
pub trait Paged {
    fn id(&self) -> u64;
}

impl Paged for u64 {
    fn id(&self) -> u64 {
        *self
    }
}

/// How a span is paged, beyond the span itself.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// The most messages one page may hold (Discord's 100).
    pub page_limit: u16,
    /// Messages (kept or filtered) per batch.
    pub batch_size: usize,
    /// The newest message ID the channel listing named (may name a deleted message).
    pub newest: Option<u64>,
    /// `--before`: messages from this ID on are out of bounds.
    pub before: Option<u64>,
    /// `--limit`: how many messages are still wanted (an explicit range is one span).
    pub limit: Option<u64>,
    /// Stop after the first page of a channel that goes on, to decide whether to split it.
    pub probe: bool,
}

/// What the driver does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<M> {
    /// Ask for the messages after `after`, at most `limit`; then call [`SpanPager::on_page`].
    Fetch { after: u64, limit: u16 },
    /// Commit this batch, then call [`SpanPager::next`].
    Commit(Commit<M>),
    /// The span is over.
    End(End),
}

/// A batch to commit in one transaction with what it claims.
#[derive(Debug, PartialEq, Eq)]
pub struct Commit<M> {
    /// The messages to store (the kept ones), oldest first.
    pub messages: Vec<M>,
    pub claim: Claim,
}

/// How a span's paging ended (after any commit it needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Done,
    /// The first page was empty although the listing named a newer message: nothing was
    /// claimed (without Read Message History Discord answers `200 []`).
    NothingVisible {
        cursor: u64,
        newest: u64,
    },
    /// Stopped after its first page, as asked, to decide whether to split the rest; the page
    /// spanned `page_ms` milliseconds.
    Probed {
        cursor: u64,
        page_ms: u64,
    },
    /// A full page and nothing after `cursor`: the server ignores `after`, and asking again
    /// would bring the same page forever.
    IgnoresAfter {
        cursor: u64,
    },
}

/// A batch being assembled: the messages to store and how far it covers.
struct Batch<M> {
    keep: Vec<M>,
    /// Messages of any kind (kept or filtered) since the last commit.
    len: usize,
    /// The largest ID covered: every message of the range up to it is in this or an earlier
    /// batch.
    last: Option<u64>,
}

impl<M> Default for Batch<M> {
    fn default() -> Self {
        Batch {
            keep: Vec::new(),
            len: 0,
            last: None,
        }
    }
}

/// A page being read.
struct Reading<M> {
    messages: vec::IntoIter<M>,
    full_page: bool,
    /// The page's last (largest) ID.
    page_max: Option<u64>,
    page_ms: u64,
    /// The span's `until` stops it in this page.
    cut_by_range: bool,
    /// `--before` or `--limit` stops it in this page.
    cut_by_bounds: bool,
}

enum State<M> {
    /// Next: ask for a page.
    Ask,
    /// Asked; waiting for [`SpanPager::on_page`].
    Asked {
        limit: u16,
    },
    Reading(Reading<M>),
    /// Commit the batch as each of these says (in order; one with nothing to commit is
    /// passed over), then go on.
    Flushing(Vec<Flush>, Box<State<M>>),
    Ending(End),
    Ended,
}

/// One span's paging state. Drive it: [`SpanPager::next`] until [`Action::End`], answering
/// each [`Action::Fetch`] with [`SpanPager::on_page`]; on a failed request or a shutdown,
/// [`SpanPager::stop`] gives what must still be committed.
pub struct SpanPager<M> {
    span: Span,
    config: Config,
    /// Exclusive: the next page is `after=cursor`.
    cursor: u64,
    /// How many messages `--limit` still wants.
    left: Option<u64>,
    batch: Batch<M>,
    state: State<M>,
}

impl<M: Paged> SpanPager<M> {
    pub fn new(span: Span, config: Config) -> Self {
        SpanPager {
            span,
            cursor: span.cursor,
            left: config.limit,
            config,
            batch: Batch::default(),
            state: State::Ask,
        }
    }

    /// A page arrived: `messages` oldest first (the readable ones), `returned` how many
    /// elements the answer held. `accept` is called once per message that belongs to the span,
    /// in order, and says whether to store it (`false`: filtered out, yet covered by the
    /// claim all the same).
    pub fn on_page(
        &mut self,
        messages: Vec<M>,
        returned: usize,
        accept: impl FnMut(&M) -> bool,
    ) -> Action<M> {
        let State::Asked { limit } = std::mem::replace(&mut self.state, State::Ended) else {
            panic!("a page the pager did not ask for");
        };
        let span = self.span;
        if returned == 0 && self.cursor == span.cursor && span.until.is_none() {
            if let Some(newest) = self.config.newest.filter(|n| *n > self.cursor) {
                // The listing names a message past the cursor, yet none came. Claiming the
                // listed newest message (as an empty last page does) would pass over the
                // channel's history for good.
                self.state = State::Ending(End::NothingVisible {
                    cursor: self.cursor,
                    newest,
                });
                return self.next(accept);
            }
        }
        let page_ms = match (messages.first(), messages.last()) {
            (Some(a), Some(b)) => snowflake_ms(b.id()).saturating_sub(snowflake_ms(a.id())),
            _ => 0,
        };
        self.state = State::Reading(Reading {
            full_page: returned >= usize::from(limit),
            page_max: messages.last().map(Paged::id),
            page_ms,
            messages: messages.into_iter(),
            cut_by_range: false,
            cut_by_bounds: false,
        });
        self.next(accept)
    }

    /// What to do next: to start, and after each commit. `accept`: see
    /// [`SpanPager::on_page`].
    pub fn next(&mut self, mut accept: impl FnMut(&M) -> bool) -> Action<M> {
        loop {
            match std::mem::replace(&mut self.state, State::Ended) {
                State::Ask => {
                    // With `--limit`, no more than are still wanted.
                    let most = self.config.page_limit;
                    let limit = self.left.map_or(most, |left| {
                        u16::try_from(left).unwrap_or(most).clamp(1, most)
                    });
                    self.state = State::Asked { limit };
                    return Action::Fetch {
                        after: self.cursor,
                        limit,
                    };
                }
                State::Asked { .. } => panic!("the pager is waiting for a page"),
                State::Reading(mut page) => match self.read(&mut page, &mut accept) {
                    Some(commit) => {
                        self.state = State::Reading(page);
                        return commit;
                    }
                    None => self.state = self.after_page(page),
                },
                State::Flushing(mut flushes, then) => {
                    if flushes.is_empty() {
                        self.state = *then;
                        continue;
                    }
                    let commit = self.commit(flushes.remove(0));
                    self.state = State::Flushing(flushes, then);
                    if let Some(commit) = commit {
                        return Action::Commit(commit);
                    }
                }
                State::Ending(end) => return Action::End(end),
                State::Ended => panic!("the span has ended"),
            }
        }
    }

    /// The request failed, or the run is stopping: what was fetched must still be committed
    /// (`None`: nothing was). The span ends here.
    pub fn stop(&mut self) -> Option<Commit<M>> {
        self.state = State::Ended;
        self.commit(Flush::Partial)
    }

    /// Takes the page's messages into batches; returns a commit when a batch is full.
    fn read(
        &mut self,
        page: &mut Reading<M>,
        accept: &mut impl FnMut(&M) -> bool,
    ) -> Option<Action<M>> {
        let span = self.span;
        for message in page.messages.by_ref() {
            let id = message.id();
            // A well-behaved server sends only IDs after the cursor; anything else is noise.
            if id <= self.cursor {
                continue;
            }
            if span.until.is_some_and(|until| id > until) {
                page.cut_by_range = true;
                break;
            }
            if self.config.before.is_some_and(|before| id >= before) || self.left == Some(0) {
                page.cut_by_bounds = true;
                break;
            }
            if let Some(left) = self.left {
                self.left = Some(left - 1);
            }
            self.batch.len += 1;
            self.batch.last = Some(id);
            if accept(&message) {
                self.batch.keep.push(message);
            }
            if self.batch.len >= self.config.batch_size.max(1) {
                return self.commit(Flush::Partial).map(Action::Commit);
            }
        }
        // A cut leaves the rest of the page unread.
        page.messages = Vec::new().into_iter();
        None
    }

    /// What follows a page read to its end (or its cut).
    fn after_page(&mut self, page: Reading<M>) -> State<M> {
        let (cursor, span, newest) = (self.cursor, self.span, self.config.newest);
        if page.full_page && page.page_max.is_some_and(|max| max <= cursor) {
            // Asking again would bring the same page forever.
            let end = State::Ending(End::IgnoresAfter { cursor });
            return State::Flushing(vec![Flush::Partial], Box::new(end));
        }
        let mut at_end = !page.full_page || page.page_max.is_none();
        // A short page is the end, yet the span was known to reach further (a listing's newer
        // message, or a later slice's start): ask once more from here before claiming the rest
        // as fetched. An empty answer confirms the end (the newer message was deleted);
        // anything else is paged on. Only a page that moved the cursor is followed, so a server
        // answering the same short page again cannot keep the span going.
        let confirm = at_end
            && !page.cut_by_range
            && !page.cut_by_bounds
            && page.page_max.is_some_and(|max| {
                max > cursor && span.until.or(newest).is_some_and(|target| max < target)
            });
        if confirm {
            at_end = false;
        }
        let limited = self.left == Some(0);
        if at_end || page.cut_by_range || page.cut_by_bounds || limited {
            let how = if page.cut_by_bounds || (limited && !at_end) {
                Flush::Bounded
            } else if at_end && span.until.is_none() {
                Flush::ReachedNewest
            } else {
                // The span's end is reached (or nothing exists past this point yet).
                Flush::SpanEnd
            };
            return State::Flushing(vec![how], Box::new(State::Ending(End::Done)));
        }
        self.cursor = page.page_max.unwrap_or(cursor).max(cursor);
        let mut flushes = Vec::new();
        if self.config.batch_size <= usize::from(self.config.page_limit) {
            // Batches never straddle pages unless they are bigger than one: a crash then costs
            // at most the page being fetched.
            flushes.push(Flush::Partial);
        }
        let then = if self.config.probe && !confirm {
            // (A page to confirm is asked for by this span: a channel that may have ended is
            // not split.)
            flushes.push(Flush::Partial);
            State::Ending(End::Probed {
                cursor: self.cursor,
                page_ms: page.page_ms,
            })
        } else {
            State::Ask
        };
        State::Flushing(flushes, Box::new(then))
    }

    /// The batch as a commit, with what it may claim; `None` if there is nothing to commit.
    fn commit(&mut self, how: Flush) -> Option<Commit<M>> {
        let claim = claim::claim(&self.span, how, self.batch.last, self.config.newest)?;
        let batch = std::mem::take(&mut self.batch);
        Some(Commit {
            messages: batch.keep,
            claim,
        })
    }
}
