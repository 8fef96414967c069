//! Benchmark helper: what SQLite alone costs to store an archive's messages the way a run does.
//!
//! `bench/run.sh` runs it on the `unthrottled` profile's archive. It reads every message of
//! the archive, then inserts them into a fresh database with the archive's schema and pragmas
//! in the order concurrent fetchers produce (each channel cut into time slices, 100-message
//! pages taken from every slice in turn, a few dozen pages per transaction), through the same
//! bundled SQLite but with none of the archiver around it: no HTTP, no JSON, no diesel, no
//! actors; one prepared statement, text bound in place. It prints the CPU seconds per 100,000
//! messages of the inserts and of the WAL checkpoints, separately: the floor under the
//! archiver's writer and checkpointer threads for the same data.
//!
//!     cargo run --release --example sqlite_floor -- ARCHIVE [SLICES_PER_CHANNEL|time [MESSAGES]]
//!
//! `time` inserts by ID instead (every insert at the table's end, as one pass over the whole
//! guild in time order would): what the same rows cost when nothing interleaves.
//!
//! `FLOOR_LAYOUT` stores the rows in another physical layout of the `messages` table than the
//! archive's own (same columns, same order), to compare layouts on the same rows:
//! `snowflake-rowid` (the snowflake is the rowid: the layout before migration 2026-12-08),
//! `append` (an ordinary rowid in arrival order, `UNIQUE(id)`, the `(channel_id, id)` index),
//! `append-channel` (an ordinary rowid, `UNIQUE(channel_id, id)` only) and `channel-key`
//! (`WITHOUT ROWID`, keyed `(channel_id, id)`, with `UNIQUE(id)`). `FLOOR_PAGE_SIZE` sets
//! another page size than the archive's.

use libsqlite3_sys as ffi;
use std::collections::BTreeMap;
use std::ffi::{c_int, CStr, CString};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};

/// Messages per page, as Discord returns them.
const PAGE: usize = 100;
/// Pages per transaction: the group commit's average on this profile.
const PAGES_PER_TRANSACTION: usize = 30;
/// A checkpoint runs when the WAL holds this many bytes, as the writer's auto-checkpoint does.
const CHECKPOINT_BYTES: c_int = 64 << 20;

/// Frames in the WAL after the last commit, as SQLite's WAL hook reports them.
static WAL_FRAMES: AtomicI32 = AtomicI32::new(0);

unsafe extern "C" fn wal_hook(
    _: *mut std::ffi::c_void,
    _: *mut ffi::sqlite3,
    _: *const std::ffi::c_char,
    frames: c_int,
) -> c_int {
    WAL_FRAMES.store(frames, Ordering::Relaxed);
    ffi::SQLITE_OK
}

enum Value {
    Int(i64),
    Text(Box<[u8]>),
    Null,
}

type Row = Vec<Value>;

struct Db(*mut ffi::sqlite3);

impl Db {
    fn open(path: &Path, flags: c_int) -> Db {
        let name = CString::new(path.to_str().expect("a UTF-8 path")).unwrap();
        let mut db = ptr::null_mut();
        // SAFETY: a valid C string and out-pointer; the handle is closed in Drop.
        let rc = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut db, flags, ptr::null()) };
        let db = Db(db);
        db.check(rc, "open");
        db
    }

    fn check(&self, rc: c_int, what: &str) {
        if rc != ffi::SQLITE_OK && rc != ffi::SQLITE_ROW && rc != ffi::SQLITE_DONE {
            // SAFETY: the handle is valid (open returns one even on failure).
            let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) };
            panic!("{what}: {}", msg.to_string_lossy());
        }
    }

    fn exec(&self, sql: &str) {
        let sql = CString::new(sql).unwrap();
        // SAFETY: valid handle and C string; no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(self.0, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut())
        };
        self.check(rc, &sql.to_string_lossy());
    }

    fn prepare(&self, sql: &str) -> *mut ffi::sqlite3_stmt {
        let c = CString::new(sql).unwrap();
        let mut stmt = ptr::null_mut();
        // SAFETY: valid handle, C string and out-pointer.
        let rc =
            unsafe { ffi::sqlite3_prepare_v2(self.0, c.as_ptr(), -1, &mut stmt, ptr::null_mut()) };
        self.check(rc, sql);
        stmt
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: statements are finalized before the database is dropped.
        unsafe { ffi::sqlite3_close(self.0) };
    }
}

/// The calling thread's CPU seconds (user + system).
fn thread_cpu() -> f64 {
    discord_archiver::stats::cpu_seconds(Path::new("/proc/thread-self/stat")).expect("Linux /proc")
}

/// CPU seconds the whole machine spent busy so far (every core; kernel writeback included).
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("Linux /proc");
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq: all but idle and iowait.
    let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6];
    busy as f64 / 100.0
}

/// Every message of the archive, by channel, oldest first; and the schema and page size to
/// recreate.
fn read_archive(path: &Path) -> (BTreeMap<i64, Vec<Row>>, Vec<String>, c_int) {
    let db = Db::open(path, ffi::SQLITE_OPEN_READONLY);
    let page_size_stmt = db.prepare("PRAGMA page_size");
    let schema_stmt = db.prepare(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'messages' AND sql IS NOT NULL \
         ORDER BY type DESC",
    );
    let mut schema = Vec::new();
    let stmt = db.prepare("SELECT * FROM messages ORDER BY channel_id, id");
    let mut channels: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
    // SAFETY: statements of a live handle, stepped and read per SQLite's API, then finalized;
    // column text is copied before the next step.
    let page_size = unsafe {
        db.check(ffi::sqlite3_step(page_size_stmt), "page size");
        let size = ffi::sqlite3_column_int(page_size_stmt, 0);
        ffi::sqlite3_finalize(page_size_stmt);
        size
    };
    // SAFETY: as above.
    unsafe {
        while ffi::sqlite3_step(schema_stmt) == ffi::SQLITE_ROW {
            let sql = CStr::from_ptr(ffi::sqlite3_column_text(schema_stmt, 0).cast());
            schema.push(sql.to_string_lossy().into_owned());
        }
        ffi::sqlite3_finalize(schema_stmt);
        let columns = ffi::sqlite3_column_count(stmt);
        while ffi::sqlite3_step(stmt) == ffi::SQLITE_ROW {
            let row: Row = (0..columns)
                .map(|i| match ffi::sqlite3_column_type(stmt, i) {
                    ffi::SQLITE_INTEGER => Value::Int(ffi::sqlite3_column_int64(stmt, i)),
                    ffi::SQLITE_NULL => Value::Null,
                    _ => {
                        let text = ffi::sqlite3_column_text(stmt, i);
                        let len = ffi::sqlite3_column_bytes(stmt, i) as usize;
                        Value::Text(std::slice::from_raw_parts(text, len).into())
                    }
                })
                .collect();
            let Value::Int(channel) = row[1] else {
                panic!("messages.channel_id is not an integer")
            };
            channels.entry(channel).or_default().push(row);
        }
        ffi::sqlite3_finalize(stmt);
    }
    (channels, schema, page_size)
}

/// The `messages` table in one of the layouts `FLOOR_LAYOUT` names.
fn layout_ddl(layout: &str) -> String {
    const COLUMNS: &str =
        "channel_id BIGINT NOT NULL, guild_id BIGINT, author_id BIGINT NOT NULL, \
        author_name TEXT NOT NULL, author_is_bot BOOLEAN NOT NULL, content TEXT NOT NULL, \
        created_at TEXT NOT NULL, edited_at TEXT, message_type INTEGER NOT NULL, \
        reference_message_id BIGINT, raw_json TEXT NOT NULL";
    let index = "CREATE INDEX messages_channel_id_id ON messages (channel_id, id);";
    match layout {
        "snowflake-rowid" => {
            format!("CREATE TABLE messages (id INTEGER PRIMARY KEY NOT NULL, {COLUMNS}); {index}")
        }
        "append" => {
            format!("CREATE TABLE messages (id BIGINT NOT NULL UNIQUE, {COLUMNS}); {index}")
        }
        "append-channel" => format!(
            "CREATE TABLE messages (id BIGINT NOT NULL, {COLUMNS}, UNIQUE (channel_id, id));"
        ),
        "channel-key" => format!(
            "CREATE TABLE messages (id BIGINT NOT NULL UNIQUE, {COLUMNS}, \
             PRIMARY KEY (channel_id, id)) WITHOUT ROWID;"
        ),
        other => panic!(
            "FLOOR_LAYOUT={other}: one of snowflake-rowid, append, append-channel, channel-key"
        ),
    }
}

/// How the archive's messages are fed to SQLite.
enum Order {
    /// As concurrent fetchers deliver them: every channel cut into this many contiguous time
    /// slices, one page from each slice in turn.
    Fetchers(usize),
    /// By ID across the whole guild: every insert at the table's end.
    Time,
}

/// The messages in pages of [`PAGE`], in `order`.
fn pages(channels: BTreeMap<i64, Vec<Row>>, order: &Order) -> Vec<Vec<Row>> {
    let lanes: Vec<Vec<Row>> = match *order {
        Order::Time => {
            let mut all: Vec<Row> = channels.into_values().flatten().collect();
            all.sort_by_key(|row| match row[0] {
                Value::Int(id) => id,
                _ => panic!("messages.id is not an integer"),
            });
            vec![all]
        }
        Order::Fetchers(slices) => channels
            .into_values()
            .flat_map(|mut rows| {
                let per = rows.len().div_ceil(slices.max(1)).max(1);
                let mut parts = Vec::new();
                while rows.len() > per {
                    parts.push(rows.split_off(rows.len() - per));
                }
                parts.push(rows);
                parts.reverse();
                parts
            })
            .collect(),
    };
    let mut lanes: Vec<_> = lanes
        .into_iter()
        .map(|l| l.into_iter().peekable())
        .collect();
    let mut pages = Vec::new();
    loop {
        let before = pages.len();
        for lane in &mut lanes {
            let page: Vec<Row> = lane.by_ref().take(PAGE).collect();
            if !page.is_empty() {
                pages.push(page);
            }
        }
        if pages.len() == before {
            return pages;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(source) = args.get(1) else {
        eprintln!("usage: sqlite_floor ARCHIVE [SLICES_PER_CHANNEL|time [MESSAGES]]");
        std::process::exit(2);
    };
    let order = match args.get(2).map(String::as_str) {
        None => Order::Fetchers(4),
        Some("time") => Order::Time,
        Some(n) => Order::Fetchers(n.parse().expect("a number of slices, or `time`")),
    };
    let (channels, schema, page_size) = read_archive(Path::new(source));
    let page_size: c_int = std::env::var("FLOOR_PAGE_SIZE").map_or(page_size, |size| {
        size.parse().expect("FLOOR_PAGE_SIZE: a page size in bytes")
    });
    let channel_count = channels.len();
    let pages = pages(channels, &order);
    let messages: usize = pages.iter().map(|p| p.len()).sum();

    // Beside the archive: the same file system as the run that wrote it.
    let target = std::path::PathBuf::from(format!("{source}.floor-{}", std::process::id()));
    let db = Db::open(
        &target,
        ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
    );
    // The archive's own settings (src/storage), with checkpoints run here to time them.
    db.exec(&format!(
        "PRAGMA page_size = {page_size}; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16384; \
             PRAGMA wal_autocheckpoint = 0;"
    ));
    match std::env::var("FLOOR_LAYOUT") {
        Ok(layout) => db.exec(&layout_ddl(&layout)),
        Err(_) => schema.iter().for_each(|sql| db.exec(sql)),
    }
    // SAFETY: a live handle; the hook touches only an atomic.
    unsafe { ffi::sqlite3_wal_hook(db.0, Some(wal_hook), ptr::null_mut()) };
    let columns = match pages.first().and_then(|p| p.first()) {
        Some(row) => row.len(),
        None => {
            eprintln!("{source}: no messages");
            std::process::exit(1);
        }
    };
    let marks = vec!["?"; columns].join(",");
    let insert = db.prepare(&format!("INSERT OR IGNORE INTO messages VALUES ({marks})"));

    let (mut insert_cpu, mut checkpoint_cpu) = (0.0, 0.0);
    let machine_before = machine_busy();
    for group in pages.chunks(PAGES_PER_TRANSACTION) {
        let started = thread_cpu();
        db.exec("BEGIN IMMEDIATE");
        for row in group.iter().flat_map(|page| page.iter()) {
            // SAFETY: the statement is live; SQLITE_STATIC is sound because every bound text
            // outlives the step that reads it (the rows live until the end of main).
            unsafe {
                for (i, value) in row.iter().enumerate() {
                    let at = i as c_int + 1;
                    match value {
                        Value::Int(v) => ffi::sqlite3_bind_int64(insert, at, *v),
                        Value::Null => ffi::sqlite3_bind_null(insert, at),
                        Value::Text(t) => ffi::sqlite3_bind_text(
                            insert,
                            at,
                            t.as_ptr().cast(),
                            t.len() as c_int,
                            ffi::SQLITE_STATIC(),
                        ),
                    };
                }
                db.check(ffi::sqlite3_step(insert), "insert");
                ffi::sqlite3_reset(insert);
            }
        }
        db.exec("COMMIT");
        let committed = thread_cpu();
        insert_cpu += committed - started;
        if WAL_FRAMES.load(Ordering::Relaxed) >= CHECKPOINT_BYTES / page_size {
            db.exec("PRAGMA wal_checkpoint(PASSIVE)");
            checkpoint_cpu += thread_cpu() - committed;
        }
    }
    let machine = machine_busy() - machine_before;
    // SAFETY: finalized once, before the handle closes.
    unsafe { ffi::sqlite3_finalize(insert) };
    drop(db);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", target.display()));
    }
    // Per 100,000 messages of the run that made the archive (filtered ones included), when
    // given: the unit of the benchmark's other figures.
    let per_messages: usize = args
        .get(3)
        .map_or(messages, |n| n.parse().expect("a count"));
    let per = |cpu: f64| cpu / per_messages.max(1) as f64 * 1e5;
    let order = match order {
        Order::Fetchers(n) => format!("as fetched, {channel_count} channels × {n} slices"),
        Order::Time => format!("by ID, {channel_count} channels"),
    };
    let layout = std::env::var("FLOOR_LAYOUT").unwrap_or_else(|_| "the archive's layout".into());
    let layout = format!("{layout}, {} KiB pages", page_size / 1024);
    println!(
        "sqlite floor ({messages} rows {order}, {layout}; per 100k of {per_messages} messages): \
         insert {:.2} + checkpoint {:.2} CPU s; machine busy {:.2} s",
        per(insert_cpu),
        per(checkpoint_cpu),
        per(machine)
    );
}
