//! WAL checkpoints on a thread of their own, so the writer never stalls on them.
//!
//! A checkpoint copies committed pages from the WAL into the database file and then fsyncs it
//! (synchronous=NORMAL): on a busy run that fsync alone blocked the writer thread for a third
//! of the wall time. Here a second connection runs PASSIVE checkpoints after the writer's
//! commits: it never takes the write lock, so the writer keeps committing meanwhile. The
//! writer's own auto-checkpoint stays as the backstop; when it fires, nearly everything is
//! already copied and synced, and the WAL restarts from its beginning, so it stays bounded.
//! Durability is unchanged: commits are in the WAL exactly as before, and a crash at any point
//! of a checkpoint is one SQLite recovers from.

use super::{connect, sqlite_err, StorageError};
use diesel::connection::SimpleConnection;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

/// The checkpointer thread's name (profilers and the run report find it by name).
pub const THREAD_NAME: &str = "archive-checkpointer";

pub struct Checkpointer {
    /// A nudge after each commit; a full slot means one is already pending.
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to the archive (already opened, checked and migrated by the
    /// writer) and starts the thread.
    pub fn start(path: &Path) -> Result<Checkpointer, StorageError> {
        let mut conn = connect(&path.to_string_lossy(), path)?;
        // synchronous is per connection: the checkpoint's fsyncs are this connection's. A busy
        // checkpoint lock (the writer's auto-checkpoint) is simply skipped.
        conn.batch_execute("PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 0;")
            .map_err(sqlite_err(path, "setting pragmas"))?;
        let (nudge, nudged) = sync_channel::<()>(1);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                while nudged.recv().is_ok() {
                    if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
                        // The writer's own checkpoint (and its errors) still cover the WAL.
                        tracing::debug!("{shown}: background checkpoint: {e}");
                    }
                }
            })
            .map_err(|source| StorageError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Checkpointer {
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint soon; never blocks.
    pub fn nudge(&self) {
        if let Some(nudge) = &self.nudge {
            let _ = nudge.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread and closes its connection (after a checkpoint in progress finishes), so
    /// the writer's connection is the last one and its close removes the WAL.
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nudge_copies_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut archive = super::super::open_rw(&path).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        // About 2 MB committed to the WAL: far below the writer's own auto-checkpoint.
        archive
            .conn
            .batch_execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                 INSERT INTO messages (id, channel_id, author_id, author_name, author_is_bot,
                     content, created_at, message_type, raw_json)
                 SELECT i, 1, 1, 'a', 0, 'c', 't', 0, hex(randomblob(500)) FROM n;",
            )
            .unwrap();
        assert_eq!(size(), before);
        let checkpointer = Checkpointer::start(&path).unwrap();
        checkpointer.nudge();
        // Dropping joins the thread, after the checkpoint it was nudged for.
        drop(checkpointer);
        assert!(size() > before + 2_000_000, "{before} → {}", size());
    }
}
