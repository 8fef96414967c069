//! Span planning: which parts of a channel to page, after a resume or a first page that shows
//! the channel is long. Pure; the fetcher supplies the concurrency it may use.

use super::{Lane, Span};
use crate::storage::models::SliceRow;
use crate::time::{snowflake_from_ms, snowflake_ms};

/// A channel this much longer than one page's time span, in pages, is split.
pub const SPLIT_MIN_PAGES: u64 = 40;
/// At most this many spans of one channel in flight: enough to keep a loose per-channel
/// bucket busy across the network latency, few enough to stay polite.
pub const MAX_SPANS: u64 = 4;

/// Every part of a channel not yet fetched, after a run that split it into slices: the gap
/// from the checkpoint to the first slice, each unfinished slice from its cursor, each hole
/// between slices (a slice is recorded only once its first batch committed, so a run stopped
/// early leaves some unrecorded), and what lies past the last slice. A last slice that reached
/// the newest message is paged on from there: messages may have come since.
pub fn resume_spans(saved: u64, slices: &[SliceRow]) -> Vec<Span> {
    let mut slices: Vec<&SliceRow> = slices.iter().collect();
    slices.sort_by_key(|s| s.after_id);
    let bound = |id: i64| (id != i64::MAX).then_some(id.max(0) as u64);
    let mut spans = Vec::new();
    // Everything up to here is fetched or about to be (`None`: to the newest message).
    let mut reach = Some(saved);
    for (i, s) in slices.iter().enumerate() {
        let after = s.after_id.max(0) as u64;
        if let Some(from) = reach.filter(|r| *r < after) {
            spans.push(Span {
                cursor: from,
                until: Some(after),
                lane: gap_lane(saved, from),
            });
        }
        let reopen = s.done && s.reached_end && i + 1 == slices.len();
        if !s.done || reopen {
            spans.push(Span {
                cursor: s.cursor_id.max(0) as u64,
                until: if reopen { None } else { bound(s.until_id) },
                lane: Lane::Slice { after },
            });
        }
        let end = if reopen { None } else { bound(s.until_id) };
        reach = match (reach, end) {
            (Some(r), Some(e)) => Some(r.max(e)),
            _ => None,
        };
    }
    if let Some(from) = reach {
        spans.push(Span {
            cursor: from,
            until: None,
            lane: gap_lane(saved, from),
        });
    }
    spans
}

/// A range starting at the checkpoint moves it; one starting further on is a new slice.
fn gap_lane(saved: u64, from: u64) -> Lane {
    if from <= saved {
        Lane::Prefix { extends: true }
    } else {
        Lane::Slice { after: from }
    }
}

/// A channel this long (pages left after its first) may be sliced even when the run has no
/// idle concurrency: it is the one that would finish last, paging alone at the end at one page
/// per round trip while the global limit has room. Few channels are this long, and their
/// extra spans are capped run-wide ([`LONG_EXTRA_SPANS`]), so memory stays bounded.
pub const LONG_CHANNEL_PAGES: u64 = 200;
/// Extra spans that long channels may hold at once beyond the idle concurrency.
pub const LONG_EXTRA_SPANS: u64 = 12;

/// Pages left in `(cursor, newest]`, when one page covered `page_ms` of snowflake time.
pub fn pages_left(newest: Option<u64>, cursor: u64, page_ms: u64) -> u64 {
    newest.filter(|n| *n > cursor).map_or(0, |newest| {
        (snowflake_ms(newest) - snowflake_ms(cursor)) / page_ms.max(1)
    })
}

/// How many more spans a channel with `pages` left may start: the `idle` concurrency, and,
/// for a long channel, up to a full set of slices from what long channels do not hold yet
/// (`long_in_use`). Returns the spare spans and how many of them are the long channels'.
pub fn spare_for(pages: u64, idle: u64, long_in_use: u64) -> (u64, u64) {
    if pages < LONG_CHANNEL_PAGES {
        return (idle, 0);
    }
    let wanted = (MAX_SPANS - 1).saturating_sub(idle);
    let long = wanted.min(LONG_EXTRA_SPANS.saturating_sub(long_in_use));
    (idle + long, long)
}

/// Cuts the rest of a channel, `(cursor, newest]`, into time slices when it is long (and the
/// run has `spare` concurrency; one page covered `page_ms`): snowflakes carry time, so equal
/// time spans are a fair guess at equal work.
pub fn split(newest: Option<u64>, cursor: u64, page_ms: u64, spare: u64) -> Vec<Span> {
    let prefix = Lane::Prefix { extends: true };
    let whole = vec![Span {
        cursor,
        until: None,
        lane: prefix,
    }];
    let Some(newest) = newest.filter(|n| *n > cursor) else {
        return whole;
    };
    let (from, to) = (snowflake_ms(cursor), snowflake_ms(newest));
    let pages = pages_left(Some(newest), cursor, page_ms);
    let parts = (pages / SPLIT_MIN_PAGES).min(MAX_SPANS).min(spare + 1);
    if parts < 2 {
        return whole;
    }
    let mut bounds: Vec<u64> = (1..parts)
        .map(|i| snowflake_from_ms(from + (to - from) * i / parts))
        .filter(|b| *b > cursor && *b < newest)
        .collect();
    bounds.dedup();
    if bounds.is_empty() {
        return whole;
    }
    let mut spans = vec![Span {
        cursor,
        until: Some(bounds[0]),
        lane: prefix,
    }];
    for (i, &after) in bounds.iter().enumerate() {
        spans.push(Span {
            cursor: after,
            until: bounds.get(i + 1).copied(),
            lane: Lane::Slice { after },
        });
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_long_channel_takes_slices_beyond_the_idle_concurrency() {
        // (pages left, idle spans, long channels' extra spans in use) → (spare, of them long)
        let cases = [
            (80, 0, 0, (0, 0)),
            (199, 2, 0, (2, 0)),
            (200, 0, 0, (3, 3)),
            (5_000, 1, 0, (3, 2)),
            (5_000, 5, 0, (5, 0)),
            (5_000, 0, 10, (2, 2)),
            (5_000, 0, LONG_EXTRA_SPANS, (0, 0)),
        ];
        for (pages, idle, in_use, want) in cases {
            assert_eq!(
                spare_for(pages, idle, in_use),
                want,
                "{pages} {idle} {in_use}"
            );
        }
    }

    fn slice(after: i64, until: i64, cursor: i64, done: bool, reached_end: bool) -> SliceRow {
        SliceRow {
            channel_id: 1,
            after_id: after,
            until_id: until,
            cursor_id: cursor,
            done,
            reached_end,
        }
    }

    /// Spans as `(cursor, until, Some(after) for a slice / None for the prefix)`.
    fn plan(saved: u64, slices: &[SliceRow]) -> Vec<(u64, Option<u64>, Option<u64>)> {
        resume_spans(saved, slices)
            .into_iter()
            .map(|s| {
                let lane = match s.lane {
                    Lane::Slice { after } => Some(after),
                    Lane::Prefix { .. } => None,
                };
                (s.cursor, s.until, lane)
            })
            .collect()
    }

    #[test]
    fn resuming_covers_the_gap_each_unfinished_slice_and_nothing_fetched() {
        let open = i64::MAX;
        let slices = [
            slice(200, 300, 250, false, false),
            slice(300, 400, 400, true, false),
            slice(400, open, 450, false, false),
        ];
        assert_eq!(
            plan(100, &slices),
            [
                (100, Some(200), None),
                (250, Some(300), Some(200)),
                (450, None, Some(400)),
            ]
        );
    }

    #[test]
    fn resuming_fetches_the_holes_of_slices_never_recorded() {
        // Slices (200, 300] and the open last one never committed a batch: no rows for them.
        let slices = [
            slice(100, 200, 150, false, false),
            slice(300, 400, 400, true, false),
        ];
        assert_eq!(
            plan(100, &slices),
            [
                (150, Some(200), Some(100)),
                (200, Some(300), Some(200)),
                (400, None, Some(400)),
            ]
        );
    }

    #[test]
    fn a_last_slice_that_reached_the_newest_message_goes_on_from_there() {
        let slices = [slice(300, 500, 500, true, true)];
        assert_eq!(
            plan(100, &slices),
            [(100, Some(300), None), (500, None, Some(300))]
        );
    }

    #[test]
    fn a_long_channel_is_split_into_adjoining_slices_a_short_one_is_not() {
        let at = |ms: u64| snowflake_from_ms(1_600_000_000_000 + ms);
        // 1,000 pages of one second each: four slices, each starting where the last ends.
        let spans = split(Some(at(1_000_000)), at(0), 1_000, 10);
        assert_eq!(spans.len(), 4);
        assert_eq!(spans[0].lane, Lane::Prefix { extends: true });
        for pair in spans.windows(2) {
            assert_eq!(pair[0].until, Some(pair[1].cursor));
            assert_eq!(
                pair[1].lane,
                Lane::Slice {
                    after: pair[1].cursor
                }
            );
        }
        assert_eq!(spans[3].until, None);
        // No spare concurrency, or too few pages left: one span to the end.
        assert_eq!(split(Some(at(1_000_000)), at(0), 1_000, 0).len(), 1);
        assert_eq!(split(Some(at(30_000)), at(0), 1_000, 10).len(), 1);
        assert_eq!(split(None, at(0), 1_000, 10).len(), 1);
    }
}
