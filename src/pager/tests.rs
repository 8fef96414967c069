//! The table: every hard case the end-to-end tests met, driven through the pager and the claim
//! rules in memory. Message IDs are snowflakes made from whole seconds, written as seconds.

use super::claim::{apply, Claim};
use super::plan::split;
use super::{Action, Commit, Config, End, Lane, Span, SpanPager};
use crate::storage::models::{CheckpointRow, SliceRow};
use crate::time::{snowflake_from_ms, snowflake_ms};

/// Any time well after Discord's epoch.
const T0: u64 = 1_600_000_000_000;

fn id(seconds: u64) -> u64 {
    if seconds == 0 {
        0
    } else {
        snowflake_from_ms(T0 + seconds * 1000)
    }
}

fn secs(id: u64) -> String {
    if id == 0 {
        return "0".into();
    }
    let ms = snowflake_ms(id) - T0;
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{ms}ms")
    }
}

#[derive(Clone, Copy)]
enum Server {
    Honest,
    /// Answers at most this many messages, whatever the limit (a short page mid-channel).
    CapsPagesAt(usize),
    /// Answers the oldest messages whatever `after` says.
    IgnoresAfter,
    /// Answers `[]` (no Read Message History).
    Hides,
    /// The n-th request (from 1) fails.
    FailsAt(usize),
}

impl Server {
    fn answer(self, held: &[u64], after: u64, limit: u16, request: usize) -> Option<Vec<u64>> {
        let limit = usize::from(limit);
        let from = |after: u64| held.iter().map(|s| id(*s)).filter(move |m| *m > after);
        Some(match self {
            Server::Honest => from(after).take(limit).collect(),
            Server::CapsPagesAt(cap) => from(after).take(limit.min(cap)).collect(),
            Server::IgnoresAfter => from(0).take(limit).collect(),
            Server::Hides => Vec::new(),
            Server::FailsAt(n) if n == request => return None,
            Server::FailsAt(_) => from(after).take(limit).collect(),
        })
    }
}

/// A span in seconds; `Lane::Slice { after }` in seconds too.
#[derive(Clone, Copy)]
struct S(u64, Option<u64>, Lane);

const OPEN: Lane = Lane::Prefix { extends: true };
const EXPLICIT: Lane = Lane::Prefix { extends: false };

struct Case {
    name: &'static str,
    held: &'static [u64],
    server: Server,
    /// The newest message the listing names.
    newest: Option<u64>,
    spans: &'static [S],
    page_limit: u16,
    batch_size: usize,
    before: Option<u64>,
    limit: Option<u64>,
    filtered: &'static [u64],
    /// Probe the first span; split with this much spare concurrency.
    probe: Option<u64>,
    /// The checkpoint before the run: `(last_message_id, complete)`.
    saved: Option<(u64, bool)>,
    want: &'static [&'static str],
    /// `(last_message_id, complete)` after the run (`None`: no checkpoint row).
    checkpoint: Option<(u64, bool)>,
    /// Slices left ahead of the checkpoint.
    slices_left: usize,
}

const CASE: Case = Case {
    name: "",
    held: &[],
    server: Server::Honest,
    newest: None,
    spans: &[S(0, None, OPEN)],
    page_limit: 5,
    batch_size: 5,
    before: None,
    limit: None,
    filtered: &[],
    probe: None,
    saved: None,
    want: &[],
    checkpoint: None,
    slices_left: 0,
};

fn claim_text(claim: Claim) -> String {
    match claim {
        Claim::Nothing => "no claim".into(),
        Claim::Prefix { through, complete } => format!(
            "prefix {}{}",
            secs(through),
            match complete {
                None => "",
                Some(true) => " complete",
                Some(false) => " incomplete",
            }
        ),
        Claim::Slice {
            after,
            until,
            cursor,
            done,
            reached_end,
        } => format!(
            "slice ({}, {}] at {}{}{}",
            secs(after),
            until.map_or("open".into(), secs),
            secs(cursor),
            if done { " done" } else { "" },
            if reached_end { " reached end" } else { "" },
        ),
    }
}

/// Runs a case's spans one after the other, as the fetcher would (minus concurrency), and
/// applies each commit to an in-memory checkpoint as the writer would.
fn run(case: &Case) -> (Vec<String>, Option<CheckpointRow>, Vec<SliceRow>) {
    let mut log = Vec::new();
    let mut checkpoint = case.saved.map(|(last, complete)| CheckpointRow {
        channel_id: 1,
        last_message_id: id(last) as i64,
        last_fetch_timestamp: String::new(),
        oldest_message_id: None,
        oldest_message_timestamp: None,
        total_messages: 0,
        complete,
        updated_at: String::new(),
    });
    let mut slices: Vec<SliceRow> = Vec::new();
    let filtered: Vec<u64> = case.filtered.iter().map(|s| id(*s)).collect();
    let newest = case.newest.map(id);
    let mut spans: Vec<(Span, bool)> = case
        .spans
        .iter()
        .enumerate()
        .map(|(i, S(cursor, until, lane))| {
            let lane = match lane {
                Lane::Slice { after } => Lane::Slice { after: id(*after) },
                other => *other,
            };
            let span = Span {
                cursor: id(*cursor),
                until: until.map(id),
                lane,
            };
            (span, i == 0 && case.probe.is_some())
        })
        .collect();
    let mut requests = 0;
    while !spans.is_empty() {
        let (span, probe) = spans.remove(0);
        let config = Config {
            page_limit: case.page_limit,
            batch_size: case.batch_size,
            newest,
            before: case.before.map(id),
            limit: case.limit,
            probe,
        };
        let mut pager = SpanPager::new(span, config);
        let accept = |m: &u64| !filtered.contains(m);
        let mut action = pager.next(accept);
        loop {
            action = match action {
                Action::Fetch { after, limit } => {
                    requests += 1;
                    log.push(format!("ask after {} limit {limit}", secs(after)));
                    match case.server.answer(case.held, after, limit, requests) {
                        Some(page) => {
                            let returned = page.len();
                            pager.on_page(page, returned, accept)
                        }
                        None => {
                            log.push("request failed".into());
                            if let Some(Commit { messages, claim }) = pager.stop() {
                                commit(&mut log, &mut checkpoint, &mut slices, messages, claim);
                            }
                            break;
                        }
                    }
                }
                Action::Commit(Commit { messages, claim }) => {
                    commit(&mut log, &mut checkpoint, &mut slices, messages, claim);
                    pager.next(accept)
                }
                Action::End(end) => {
                    log.push(match end {
                        End::Done => "done".into(),
                        End::NothingVisible { cursor, newest } => {
                            format!(
                                "nothing visible after {} up to {}",
                                secs(cursor),
                                secs(newest)
                            )
                        }
                        End::IgnoresAfter { cursor } => {
                            format!("server ignores after {}", secs(cursor))
                        }
                        End::Probed { cursor, page_ms } => {
                            let parts = split(newest, cursor, page_ms, case.probe.unwrap());
                            let text: Vec<String> = parts
                                .iter()
                                .map(|s| {
                                    format!(
                                        "({}, {}]{}",
                                        secs(s.cursor),
                                        s.until.map_or("open".into(), secs),
                                        if let Lane::Slice { .. } = s.lane {
                                            " slice"
                                        } else {
                                            ""
                                        }
                                    )
                                })
                                .collect();
                            spans.extend(parts.into_iter().map(|s| (s, false)));
                            format!("probed: split {}", text.join(" "))
                        }
                    });
                    break;
                }
            };
        }
    }
    (log, checkpoint, slices)
}

fn commit(
    log: &mut Vec<String>,
    checkpoint: &mut Option<CheckpointRow>,
    slices: &mut Vec<SliceRow>,
    messages: Vec<u64>,
    claim: Claim,
) {
    let kept: Vec<String> = messages.iter().map(|m| secs(*m)).collect();
    log.push(format!(
        "commit [{}] {}",
        kept.join(", "),
        claim_text(claim)
    ));
    let update = claim.update(1, None, "now".into());
    let applied = apply(checkpoint.as_ref(), slices, &update, messages.len() as i64);
    *checkpoint = Some(applied.checkpoint);
    *slices = applied.slices;
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "an honest channel is paged to its newest message",
            held: &[1, 2, 3, 4, 5, 6, 7],
            newest: Some(7),
            want: &[
                "ask after 0 limit 5",
                "commit [1, 2, 3, 4, 5] prefix 5 incomplete",
                "ask after 5 limit 5",
                "commit [6, 7] prefix 7 complete",
                "done",
            ],
            checkpoint: Some((7, true)),
            ..CASE
        },
        Case {
            name: "a short page below the listed newest is asked past, and paged on",
            held: &[1, 2, 3, 4, 5],
            server: Server::CapsPagesAt(2),
            newest: Some(5),
            want: &[
                "ask after 0 limit 5",
                "commit [1, 2] prefix 2 incomplete",
                "ask after 2 limit 5",
                "commit [3, 4] prefix 4 incomplete",
                "ask after 4 limit 5",
                "commit [5] prefix 5 complete",
                "done",
            ],
            checkpoint: Some((5, true)),
            ..CASE
        },
        Case {
            name: "a deleted newest message: an empty answer confirms the end, the listed newest is claimed",
            held: &[1, 2, 3],
            newest: Some(4),
            want: &[
                "ask after 0 limit 5",
                "commit [1, 2, 3] prefix 3 incomplete",
                "ask after 3 limit 5",
                "commit [] prefix 4 complete",
                "done",
            ],
            checkpoint: Some((4, true)),
            ..CASE
        },
        Case {
            name: "a server repeating a short page is followed once, never twice",
            held: &[1, 2, 3],
            server: Server::IgnoresAfter,
            newest: Some(4),
            want: &[
                "ask after 0 limit 5",
                "commit [1, 2, 3] prefix 3 incomplete",
                "ask after 3 limit 5",
                "commit [] prefix 4 complete",
                "done",
            ],
            checkpoint: Some((4, true)),
            ..CASE
        },
        Case {
            name: "a server ignoring after: a full page with nothing after the cursor stops the span",
            held: &[1, 2, 3, 4, 5, 6, 7],
            server: Server::IgnoresAfter,
            newest: Some(7),
            want: &[
                "ask after 0 limit 5",
                "commit [1, 2, 3, 4, 5] prefix 5 incomplete",
                "ask after 5 limit 5",
                "server ignores after 5",
            ],
            checkpoint: Some((5, false)),
            ..CASE
        },
        Case {
            name: "explicit --after past the checkpoint and --before: nothing is claimed over the gap",
            held: &[1, 2, 3, 4, 5, 6, 7],
            newest: Some(7),
            spans: &[S(2, None, EXPLICIT)],
            before: Some(5),
            want: &[
                "ask after 2 limit 5",
                "commit [3, 4] no claim",
                "done",
            ],
            checkpoint: Some((0, false)),
            ..CASE
        },
        Case {
            name: "explicit --before from the checkpoint: claimed up to the bound, not complete",
            held: &[1, 2, 3, 4, 5, 6, 7],
            newest: Some(7),
            before: Some(3),
            want: &["ask after 0 limit 5", "commit [1, 2] prefix 2 incomplete", "done"],
            checkpoint: Some((2, false)),
            ..CASE
        },
        Case {
            name: "--limit below a page asks for no more than is left",
            held: &[1, 2, 3, 4, 5, 6, 7, 8, 9],
            newest: Some(9),
            limit: Some(7),
            want: &[
                "ask after 0 limit 5",
                "commit [1, 2, 3, 4, 5] prefix 5 incomplete",
                "ask after 5 limit 2",
                "commit [6, 7] prefix 7 incomplete",
                "done",
            ],
            checkpoint: Some((7, false)),
            ..CASE
        },
        Case {
            name: "--limit reaching the newest message exactly still claims only what it fetched",
            held: &[1, 2, 3],
            newest: Some(3),
            limit: Some(3),
            want: &["ask after 0 limit 3", "commit [1, 2, 3] prefix 3 incomplete", "done"],
            checkpoint: Some((3, false)),
            ..CASE
        },
        Case {
            name: "a filtered tail still advances the claim",
            held: &[1, 2, 3, 4, 5, 6, 7],
            newest: Some(7),
            filtered: &[4, 5, 7],
            want: &[
                "ask after 0 limit 5",
                "commit [1, 2, 3] prefix 5 incomplete",
                "ask after 5 limit 5",
                "commit [6] prefix 7 complete",
                "done",
            ],
            checkpoint: Some((7, true)),
            ..CASE
        },
        Case {
            name: "a batch of filtered messages alone is committed: its claim moves the checkpoint",
            held: &[1, 2, 3],
            newest: Some(3),
            batch_size: 2,
            filtered: &[3],
            want: &[
                "ask after 0 limit 5",
                "commit [1, 2] prefix 2 incomplete",
                "commit [] prefix 3 complete",
                "done",
            ],
            checkpoint: Some((3, true)),
            ..CASE
        },
        Case {
            name: "batches bigger than a page straddle pages; a failed request commits what was fetched",
            held: &[1, 2, 3, 4, 5, 6, 7],
            server: Server::FailsAt(2),
            newest: Some(7),
            batch_size: 10,
            want: &[
                "ask after 0 limit 5",
                "ask after 5 limit 5",
                "request failed",
                "commit [1, 2, 3, 4, 5] prefix 5 incomplete",
            ],
            checkpoint: Some((5, false)),
            ..CASE
        },
        Case {
            name: "a slice meeting the checkpoint is folded into it",
            held: &[1, 2, 3, 4, 5, 6],
            newest: Some(6),
            spans: &[
                S(3, None, Lane::Slice { after: 3 }),
                S(0, Some(3), OPEN),
            ],
            want: &[
                "ask after 3 limit 5",
                "commit [4, 5, 6] slice (3, 6] at 6 done reached end",
                "done",
                "ask after 0 limit 5",
                "commit [1, 2, 3] prefix 3",
                "done",
            ],
            checkpoint: Some((6, true)),
            ..CASE
        },
        Case {
            name: "an unfinished slice ahead of a gap stays a slice",
            held: &[1, 2, 3, 4, 5, 6, 7, 8],
            newest: Some(8),
            spans: &[S(3, Some(6), Lane::Slice { after: 3 })],
            page_limit: 2,
            batch_size: 2,
            limit: None,
            want: &[
                "ask after 3 limit 2",
                "commit [4, 5] slice (3, 6] at 5",
                "ask after 5 limit 2",
                "commit [6] slice (3, 6] at 6 done",
                "done",
            ],
            checkpoint: Some((0, false)),
            slices_left: 1,
            ..CASE
        },
        Case {
            name: "an empty first page with a listed newer message: nothing visible, nothing claimed",
            held: &[1, 2, 3],
            server: Server::Hides,
            newest: Some(3),
            want: &["ask after 0 limit 5", "nothing visible after 0 up to 3"],
            checkpoint: None,
            ..CASE
        },
        Case {
            name: "an empty first page after the checkpoint with nothing listed past it: up to date",
            held: &[1, 2, 3],
            newest: Some(3),
            spans: &[S(3, None, OPEN)],
            saved: Some((3, true)),
            want: &["ask after 3 limit 5", "commit [] prefix 3 complete", "done"],
            checkpoint: Some((3, true)),
            ..CASE
        },
        Case {
            name: "probe, then split: the rest of a long channel is paged as a prefix and a slice",
            held: &[1, 2, 3, 4, 5, 500, 1000, 1500, 2005],
            newest: Some(2005),
            probe: Some(1),
            want: &[
                "ask after 0 limit 5",
                "commit [1, 2, 3, 4, 5] prefix 5 incomplete",
                "probed: split (5, 1005] (1005, open] slice",
                "ask after 5 limit 5",
                "commit [500, 1000] prefix 1005",
                "done",
                "ask after 1005 limit 5",
                "commit [1500, 2005] slice (1005, 2005] at 2005 done reached end",
                "done",
            ],
            checkpoint: Some((2005, true)),
            ..CASE
        },
        Case {
            name: "a probe that meets the end is not split",
            held: &[1, 2, 3],
            newest: Some(3),
            probe: Some(4),
            want: &["ask after 0 limit 5", "commit [1, 2, 3] prefix 3 complete", "done"],
            checkpoint: Some((3, true)),
            ..CASE
        },
    ]
}

#[test]
fn every_hard_case_pages_and_claims_as_it_should() {
    let mut failures = Vec::new();
    for case in cases() {
        let (log, checkpoint, slices) = run(&case);
        let got = checkpoint
            .as_ref()
            .map(|c| (c.last_message_id as u64, c.complete));
        let want = case.checkpoint.map(|(last, complete)| (id(last), complete));
        if log != case.want || got != want || slices.len() != case.slices_left {
            failures.push(format!(
                "{}:\n  got  {log:#?}\n  want {:#?}\n  checkpoint {:?} (want {:?}), {} slices left (want {})",
                case.name,
                case.want,
                got.map(|(l, c)| (secs(l), c)),
                case.checkpoint,
                slices.len(),
                case.slices_left
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
