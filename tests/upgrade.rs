//! An archive written by the previous release (`tests/fixtures/`) opens, exports and resumes
//! after this version's migrations, with nothing lost and nothing twice.

use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};

/// Made by the release before the arrival-order layout (commit 42265ea), against the
/// simulator's `test` preset with seed 1 (what [`Harness::small`] serves), stopped early by
/// `--limit 150`: every channel's checkpoint sits inside its history, so a resume has work to
/// do. See `tests/fixtures/README.md` for the commands.
const PREVIOUS_RELEASE: &str = "tests/fixtures/archive-42265ea.db";

#[test]
fn an_archive_of_the_previous_release_opens_exports_and_resumes_with_nothing_lost() {
    let h = Harness::small();
    std::fs::copy(PREVIOUS_RELEASE, &h.db).expect("the fixture is there");
    let before = h.archived();
    let checkpoints_before = h.checkpoints();
    assert!(!before.is_empty() && !checkpoints_before.is_empty());

    // `status` and `export` read the old file as it is (read-only: no migration yet).
    let out = h.bin(&["export", "--db", h.db.to_str().unwrap()]);
    out.assert_exit(0, "export of the previous release's archive");
    assert_eq!(out.stdout().lines().count(), before.len());

    // The resume migrates the archive, then fetches only what lies past each checkpoint.
    let args = h.archive_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.bin(&args);
    out.assert_exit(0, "resume after the migration");

    let after = h.archived();
    for (id, row) in &before {
        assert_eq!(
            after.get(id),
            Some(row),
            "message {id} changed in the migration"
        );
    }
    let expected = h.expected(&BTreeSet::new());
    let fetched_before = |row: &Row| {
        checkpoints_before
            .get(&row.channel_id)
            .is_some_and(|cp| row.id <= cp.last_message_id)
    };
    // What lies past the old checkpoints is exactly what an uninterrupted run stores there.
    let new: BTreeMap<i64, Row> = after
        .iter()
        .filter(|(_, r)| !fetched_before(r))
        .map(|(id, r)| (*id, r.clone()))
        .collect();
    let want: BTreeMap<i64, Row> = expected
        .into_iter()
        .filter(|(_, r)| !fetched_before(r))
        .collect();
    assert_same_rows(&new, &want);
    assert!(!new.is_empty(), "the resume fetched nothing");
    for (channel, cp) in h.checkpoints() {
        assert!(
            cp.complete,
            "channel {channel} is not complete after the resume"
        );
        let rows = after.values().filter(|r| r.channel_id == channel).count();
        assert_eq!(cp.total_messages, rows as i64, "channel {channel}'s count");
    }

    // And the migrated archive exports every row once.
    let out = h.bin(&["export", "--db", h.db.to_str().unwrap()]);
    out.assert_exit(0, "export after the migration");
    let exported: Vec<serde_json::Value> = out
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: BTreeSet<String> = exported.iter().map(|m| m["id"].to_string()).collect();
    assert_eq!((exported.len(), ids.len()), (after.len(), after.len()));
}
