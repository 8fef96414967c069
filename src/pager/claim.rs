//! The claim rules: what a committed batch may say about its channel (the checkpoint's cursor,
//! `complete`, a slice's progress), and how those claims fold into the stored checkpoint.
//!
//! Everything here is pure. The fetcher asks [`claim`] what a batch may claim; the writer
//! (the archive's only writer, which keeps every touched checkpoint in memory) asks [`apply`]
//! what the checkpoint and slices become, then writes exactly that. Invariant 2 of SPEC.md
//! lives here: `last_message_id` never claims a message that was not fetched.

use super::{Lane, Span};
use crate::storage::models::{CheckpointRow, SliceRow};
use crate::storage::sql_id;

/// Why a batch is committed: what its checkpoint may claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Mid-span: everything up to the batch's last message.
    Partial,
    /// An explicit bound (`--before`, `--limit`) stopped the span: not the channel's end.
    Bounded,
    /// The span reached its end: everything up to `until` is fetched.
    SpanEnd,
    /// The open span reached the channel's newest message.
    ReachedNewest,
}

/// What one batch says about its channel, besides its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Every message up to `through` is fetched. `complete` is said only by a span open to the
    /// newest message: a span bounded by a slice ahead ends before it, and the slice decides.
    Prefix {
        through: u64,
        complete: Option<bool>,
    },
    /// Nothing: an explicit range that starts past the checkpoint would claim a gap as fetched.
    Nothing,
    /// A slice ahead of the checkpoint: fetched from `after` up to `cursor`; it ends at `until`
    /// (`None`: open to the newest message).
    Slice {
        after: u64,
        until: Option<u64>,
        cursor: u64,
        done: bool,
        reached_end: bool,
    },
}

/// What a batch of `span` whose largest message is `last` may claim, given why it is committed
/// and the newest message the channel listing named. `None`: there is nothing to commit.
pub fn claim(span: &Span, how: Flush, last: Option<u64>, newest: Option<u64>) -> Option<Claim> {
    let last = match how {
        Flush::Partial | Flush::Bounded => last,
        // Nothing up to `until` is left unfetched.
        Flush::SpanEnd => last.max(span.until).or(Some(span.cursor)),
        // The listing's newest message existed before we reached the end, so everything up to
        // it is fetched even if it was deleted since: the next run can then tell "nothing new"
        // from the listing alone, without a request.
        Flush::ReachedNewest => last.max(newest).or(Some(span.cursor)),
    }?;
    Some(match span.lane {
        Lane::Prefix { extends: false } => Claim::Nothing,
        Lane::Prefix { extends: true } => Claim::Prefix {
            through: last,
            complete: span.until.is_none().then_some(how == Flush::ReachedNewest),
        },
        Lane::Slice { after } => Claim::Slice {
            after,
            until: match (how, span.until) {
                (Flush::ReachedNewest, _) => Some(last),
                (_, until) => until,
            },
            cursor: last,
            done: matches!(how, Flush::SpanEnd | Flush::ReachedNewest),
            reached_end: how == Flush::ReachedNewest,
        },
    })
}

impl Claim {
    /// The checkpoint change that commits with the batch. `oldest` is the batch's oldest
    /// stored message (id, creation time), if it stores any.
    pub fn update(
        self,
        channel_id: u64,
        oldest: Option<(i64, String)>,
        now: String,
    ) -> CheckpointUpdate {
        let channel = sql_id(channel_id);
        let (last_message_id, complete, slice) = match self {
            Claim::Nothing => (None, None, None),
            Claim::Prefix { through, complete } => (Some(sql_id(through)), complete, None),
            Claim::Slice {
                after,
                until,
                cursor,
                done,
                reached_end,
            } => (
                None,
                None,
                Some(SliceRow {
                    channel_id: channel,
                    after_id: sql_id(after),
                    until_id: until.map_or(i64::MAX, sql_id),
                    cursor_id: sql_id(cursor),
                    done,
                    reached_end,
                }),
            ),
        };
        CheckpointUpdate {
            channel_id: channel,
            last_message_id,
            oldest,
            complete,
            now,
            slice,
        }
    }
}

/// The checkpoint change that commits with a batch (same transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointUpdate {
    pub channel_id: i64,
    /// Every message up to this ID is now fetched; `None` leaves the cursor where it is (an
    /// explicit range that does not join the fetched prefix must not jump over a gap).
    pub last_message_id: Option<i64>,
    /// The oldest message in this batch, if any: the checkpoint keeps the minimum.
    pub oldest: Option<(i64, String)>,
    /// `Some(true)` on the batch that reached the channel's newest message.
    pub complete: Option<bool>,
    pub now: String,
    /// Set when the batch belongs to a slice ahead of the checkpoint (then `last_message_id`
    /// is `None`): the slice's progress, recorded so a resume does not fetch it again.
    pub slice: Option<SliceRow>,
}

/// A channel's state after one batch, and what must be written for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub checkpoint: CheckpointRow,
    /// The slices still ahead of the checkpoint.
    pub slices: Vec<SliceRow>,
    /// The batch's slice, to upsert: `None` if it has none, or if the checkpoint reached it.
    pub upsert: Option<SliceRow>,
    /// Slices stored before that the checkpoint has now absorbed.
    pub delete: Vec<SliceRow>,
}

/// The channel's checkpoint and slices after a batch that inserted `inserted` new rows, from
/// their state before it (`previous`, `slices`).
pub fn apply(
    previous: Option<&CheckpointRow>,
    slices: &[SliceRow],
    update: &CheckpointUpdate,
    inserted: i64,
) -> Applied {
    let mut checkpoint = merge_checkpoint(previous, update, inserted);
    let mut now = slices.to_vec();
    if let Some(slice) = &update.slice {
        match now.iter_mut().find(|s| s.after_id == slice.after_id) {
            Some(s) => *s = slice.clone(),
            None => now.push(slice.clone()),
        }
    }
    let merged = fold_slices(&mut checkpoint, &mut now);
    // A slice the checkpoint has reached is part of it: written only if it stays ahead, and
    // deleted if it was stored.
    let upsert = update
        .slice
        .clone()
        .filter(|s| !merged.iter().any(|m| m.after_id == s.after_id));
    let delete = merged
        .into_iter()
        .filter(|m| slices.iter().any(|b| b.after_id == m.after_id))
        .collect();
    Applied {
        checkpoint,
        slices: now,
        upsert,
        delete,
    }
}

/// Extends the checkpoint over the slices it has reached, and returns them (to be deleted):
/// through a done slice entirely, into an unfinished one up to its cursor. A slice reached is
/// part of the contiguous prefix from then on; left in place, it would outlive a checkpoint
/// that passed it (an explicit range run) and name a range nothing resumes.
pub fn fold_slices(row: &mut CheckpointRow, slices: &mut Vec<SliceRow>) -> Vec<SliceRow> {
    let mut merged = Vec::new();
    slices.sort_by_key(|s| s.after_id);
    while let Some(i) = slices
        .iter()
        .position(|s| s.after_id <= row.last_message_id)
    {
        let s = slices.remove(i);
        row.last_message_id = row.last_message_id.max(s.cursor_id);
        if s.done {
            row.last_message_id = row.last_message_id.max(s.until_id);
            if s.reached_end {
                row.complete = true;
            }
        }
        merged.push(s);
    }
    merged
}

/// The checkpoint after a batch: the cursor never moves back, the oldest message is the
/// minimum seen, the total counts rows actually inserted.
pub fn merge_checkpoint(
    previous: Option<&CheckpointRow>,
    update: &CheckpointUpdate,
    inserted: i64,
) -> CheckpointRow {
    let mut row = previous.cloned().unwrap_or(CheckpointRow {
        channel_id: update.channel_id,
        last_message_id: 0,
        last_fetch_timestamp: String::new(),
        oldest_message_id: None,
        oldest_message_timestamp: None,
        total_messages: 0,
        complete: false,
        updated_at: String::new(),
    });
    let advances = update
        .last_message_id
        .is_some_and(|last| last > row.last_message_id);
    if let Some(last) = update.last_message_id {
        row.last_message_id = row.last_message_id.max(last);
    }
    if let Some((id, at)) = &update.oldest {
        if row.oldest_message_id.is_none_or(|old| *id < old) {
            row.oldest_message_id = Some(*id);
            row.oldest_message_timestamp = Some(at.clone());
        }
    }
    row.total_messages += inserted;
    // Pages fetched again behind the cursor (an explicit range over archived history) say
    // nothing new about where the channel ends: only reaching the end, or moving past the
    // cursor without reaching it, changes `complete`.
    if let Some(complete) = update.complete.filter(|c| *c || advances) {
        row.complete = complete;
    }
    row.last_fetch_timestamp = update.now.clone();
    row.updated_at = update.now.clone();
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(last: Option<i64>, complete: Option<bool>) -> CheckpointUpdate {
        CheckpointUpdate {
            channel_id: 7,
            last_message_id: last,
            oldest: None,
            complete,
            now: "now".into(),
            slice: None,
        }
    }

    fn slice(after: i64, until: i64, cursor: i64, done: bool) -> SliceRow {
        SliceRow {
            channel_id: 7,
            after_id: after,
            until_id: until,
            cursor_id: cursor,
            done,
            reached_end: false,
        }
    }

    #[test]
    fn the_checkpoint_absorbs_slices_it_reaches_and_no_further() {
        let mut row = merge_checkpoint(None, &cp(Some(100), Some(false)), 0);
        let mut slices = vec![slice(300, 400, 350, false), slice(100, 200, 200, true)];
        // Reaches the done slice (100..200], then stops short of (300..]: a gap remains.
        let merged = fold_slices(&mut row, &mut slices);
        assert_eq!(merged, [slice(100, 200, 200, true)]);
        assert_eq!(row.last_message_id, 200);
        assert_eq!(slices.len(), 1);
        // The prefix reaches 300: it extends into the unfinished slice up to its cursor only,
        // and the slice is part of the prefix from then on.
        row.last_message_id = 300;
        assert_eq!(
            fold_slices(&mut row, &mut slices),
            [slice(300, 400, 350, false)]
        );
        assert_eq!(row.last_message_id, 350);
        assert!(!row.complete && slices.is_empty());
        // That slice's span goes on, finishes at the channel's end: merged, complete.
        slices.push(SliceRow {
            reached_end: true,
            ..slice(300, 420, 420, true)
        });
        fold_slices(&mut row, &mut slices);
        assert_eq!((row.last_message_id, row.complete), (420, true));
        assert!(slices.is_empty());
    }

    #[test]
    fn a_slice_the_checkpoint_reaches_is_deleted_if_stored_and_never_written() {
        let before = merge_checkpoint(None, &cp(Some(10), Some(false)), 1);
        // Stored ahead: a gap (10..20] is still unfetched.
        let mut ahead = cp(None, Some(false));
        ahead.slice = Some(slice(20, 30, 25, false));
        let a = apply(Some(&before), &[], &ahead, 1);
        assert_eq!(a.checkpoint.last_message_id, 10);
        assert_eq!(a.upsert, ahead.slice);
        assert!(a.delete.is_empty());
        // The prefix reaches the slice: the slice is folded in and its row deleted.
        let b = apply(
            Some(&a.checkpoint),
            &a.slices,
            &cp(Some(20), Some(false)),
            0,
        );
        assert_eq!(b.checkpoint.last_message_id, 25);
        assert_eq!((b.upsert, b.delete), (None, vec![slice(20, 30, 25, false)]));
        // The slice's span goes on behind the checkpoint now: nothing is written for it.
        let mut on = cp(None, None);
        on.slice = Some(slice(20, 30, 30, true));
        let c = apply(Some(&b.checkpoint), &b.slices, &on, 0);
        assert_eq!(c.checkpoint.last_message_id, 30);
        assert_eq!((c.upsert, c.delete.len()), (None, 0));
    }
}
