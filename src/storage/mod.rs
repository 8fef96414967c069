//! The SQLite archive: opening it safely, the embedded migrations, and the queries the writer runs.
//!
//! Only the writer actor holds a read-write [`Archive`]; `status` and `export` open read-only
//! connections. Opening refuses anything that is not ours (a non-SQLite file, somebody else's
//! database, a newer schema) before writing a single byte to it.

pub mod checkpointer;
pub mod models;
pub mod queries;
pub mod schema;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Snowflakes use 63 bits at most (the top bit would be a timestamp past the year 2084), so
/// they fit SQLite's signed INTEGER.
pub fn sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Written by the first migration; its presence is what makes a database ours.
const APPLICATION: &str = "discord-archiver";
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: cannot create the archive: {source}. Check that the directory exists and is writable, or choose another path with --db")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no archive here. Run `discord-archiver archive --db {path}` first")]
    Missing { path: PathBuf },
    #[error("{path}: {reason}; refusing to touch it. Choose another path with --db")]
    NotOurs { path: PathBuf, reason: String },
    #[error("{path}: the archive was written by a newer discord-archiver (schema {version}); upgrade this binary to use it. The file was left unchanged")]
    NewerSchema { path: PathBuf, version: String },
    #[error("{path}: another discord-archiver is writing to this archive; wait for it to finish or use another --db")]
    Locked { path: PathBuf },
    #[error("{path}: {context}: {source}{}", hint(&source.to_string()))]
    Sqlite {
        path: PathBuf,
        context: &'static str,
        source: diesel::result::Error,
    },
    #[error("{path}: cannot open: {source}{}", hint(&source.to_string()))]
    Connect {
        path: PathBuf,
        source: diesel::ConnectionError,
    },
    #[error("{path}: database migration failed: {message}{}", hint(message))]
    Migration { path: PathBuf, message: String },
    #[error("the archive was already closed")]
    Closed,
    /// The test hook that simulates a crash right after a given commit fired.
    #[error("the writer was halted (test hook)")]
    Halted,
    #[error("{path}: {source}{}", hint(&source.to_string()))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether the error says the disk (or SQLite's page budget) is full, or that the file
    /// cannot be written at all (SQLite's "disk I/O error": a file-size limit, a failing disk,
    /// a file system gone read-only). Either way every channel's next batch would fail alike,
    /// so the run stops, keeping what is committed, instead of restarting fetchers into it.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::Sqlite { source, .. } if is_full(source))
    }

    /// The same error again, for each batch of a group commit that failed as a whole (the
    /// errors' sources are not `Clone`; what the message says, and how it is classified, is
    /// kept).
    pub fn again(&self) -> StorageError {
        use diesel::result::Error;
        match self {
            StorageError::Sqlite {
                path,
                context,
                source,
            } => StorageError::Sqlite {
                path: path.clone(),
                context,
                source: match source {
                    Error::DatabaseError(kind, info) => {
                        Error::DatabaseError(*kind, Box::new(info.message().to_owned()))
                    }
                    other => Error::QueryBuilderError(other.to_string().into()),
                },
            },
            StorageError::Closed => StorageError::Closed,
            StorageError::Halted => StorageError::Halted,
            other => StorageError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

/// What to do about a storage error, from its text (SQLite's messages are its only account):
/// SQLite says "disk I/O error" when it cannot even grow its shared-memory file on a full disk
/// (and "database or disk is full" when a page write fails).
pub fn hint(text: &str) -> &'static str {
    if text.contains("disk is full") || text.contains("disk I/O error") {
        " (is the disk full, or the file system read-only? Free some space, or choose another --db)"
    } else if text.contains("database is locked") || text.contains("database table is locked") {
        " (another program has the archive open and is writing to it: close it, or wait for it, and try again)"
    } else if text.contains("malformed")
        || text.contains("file is not a database")
        || text.contains("invalid utf-8")
    {
        " (the archive is damaged: keep a copy of it, and recover what it holds with `sqlite3 ARCHIVE .recover`)"
    } else if text.contains("readonly database")
        || text.contains("Read-only file system")
        || text.contains("Permission denied")
    {
        " (the archive or its directory cannot be written: check their permissions, or choose another --db)"
    } else if text.contains("unable to open database file") {
        " (check that --db names a file in a directory you may write to)"
    } else {
        ""
    }
}

fn is_full(e: &diesel::result::Error) -> bool {
    let text = e.to_string();
    text.contains("disk is full") || text.contains("disk I/O error")
}

/// A read-write archive, held by the writer actor alone.
pub struct Archive {
    pub conn: SqliteConnection,
    pub path: PathBuf,
    /// An exclusive advisory lock on the database file (flock, which Linux keeps apart from
    /// SQLite's own fcntl locks): a second archiver on the same file refuses instead of
    /// interleaving. Dropping the file releases it.
    _lock: File,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("path", &self.path).finish()
    }
}

/// What the file at a path is, judged without opening it for writing.
enum Found {
    Nothing,
    Empty,
    Sqlite,
}

fn inspect(path: &Path) -> Result<Found, StorageError> {
    let io = |source| StorageError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(io(e)),
    };
    if !meta.is_file() {
        return Err(StorageError::NotOurs {
            path: path.to_owned(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() == 0 {
        return Ok(Found::Empty);
    }
    let mut magic = [0u8; 16];
    let mut file = File::open(path).map_err(io)?;
    if file.read_exact(&mut magic).is_err() || &magic != SQLITE_MAGIC {
        return Err(StorageError::NotOurs {
            path: path.to_owned(),
            reason: "not a SQLite database".into(),
        });
    }
    Ok(Found::Sqlite)
}

fn sqlite_err(
    path: &Path,
    context: &'static str,
) -> impl FnOnce(diesel::result::Error) -> StorageError {
    let path = path.to_owned();
    move |source| StorageError::Sqlite {
        path,
        context,
        source,
    }
}

/// Checks that an existing SQLite database is ours and not newer than this binary, reading only.
fn check_ours(conn: &mut SqliteConnection, path: &Path) -> Result<(), StorageError> {
    let tables = queries::table_names(conn).map_err(|source| {
        // A file with SQLite's magic but garbage after it fails here.
        StorageError::NotOurs {
            path: path.to_owned(),
            reason: format!("unreadable as SQLite ({source})"),
        }
    })?;
    // Diesel records migrations in a table it creates before the first migration's own
    // transaction: a run killed in between leaves just that table (and no version in it).
    let interrupted_init = tables.iter().all(|t| t == "__diesel_schema_migrations")
        && MigrationHarness::<diesel::sqlite::Sqlite>::applied_migrations(conn)
            .is_ok_and(|v| v.is_empty());
    if tables.is_empty() || interrupted_init {
        // No tables yet, but another program may have claimed the file already: with views
        // or triggers (which an archive of ours may gain from its users, but only once it has
        // its tables), or with a mark in its header.
        let others =
            queries::other_schema_objects(conn).map_err(|source| StorageError::NotOurs {
                path: path.to_owned(),
                reason: format!("unreadable as SQLite ({source})"),
            })?;
        if !others.is_empty() {
            return Err(StorageError::NotOurs {
                path: path.to_owned(),
                reason: format!(
                    "a SQLite database that is not a discord-archiver archive (it has {})",
                    others.join(", ")
                ),
            });
        }
        let claimed: Vec<(&str, i64)> = ["application_id", "user_version"]
            .into_iter()
            .filter_map(|pragma| {
                let value = queries::pragma_int(conn, pragma).ok()?;
                (value != 0).then_some((pragma, value))
            })
            .collect();
        if let Some((pragma, value)) = claimed.first() {
            return Err(StorageError::NotOurs {
                path: path.to_owned(),
                reason: format!(
                    "an empty SQLite database that another program marked ({pragma} = {value})"
                ),
            });
        }
        return Ok(());
    }
    if !tables.iter().any(|t| t == "archive_meta") {
        return Err(StorageError::NotOurs {
            path: path.to_owned(),
            reason: format!(
                "a SQLite database that is not a discord-archiver archive (it has tables {})",
                tables.join(", ")
            ),
        });
    }
    match queries::meta_value(conn, "application")
        .map_err(sqlite_err(path, "reading archive_meta"))?
    {
        Some(app) if app == APPLICATION => {}
        other => {
            return Err(StorageError::NotOurs {
                path: path.to_owned(),
                reason: format!("archive_meta names another application ({other:?})"),
            })
        }
    }
    let known: Vec<String> = MigrationHarness::<diesel::sqlite::Sqlite>::applied_migrations(conn)
        .map_err(|e| StorageError::Migration {
            path: path.to_owned(),
            message: e.to_string(),
        })?
        .into_iter()
        .map(|v| v.to_string())
        .collect();
    let ours = embedded_versions();
    if let Some(newer) = known.iter().find(|v| !ours.contains(v)) {
        return Err(StorageError::NewerSchema {
            path: path.to_owned(),
            version: newer.clone(),
        });
    }
    Ok(())
}

fn embedded_versions() -> Vec<String> {
    use diesel::migration::MigrationSource;
    MigrationSource::<diesel::sqlite::Sqlite>::migrations(&MIGRATIONS)
        .expect("embedded migrations are valid")
        .iter()
        .map(|m| m.name().version().to_string())
        .collect()
}

/// The page size a new archive is created with (SQLite's largest).
const NEW_PAGE_SIZE: i64 = 65536;

/// The WAL size at which the writer checkpoints itself (the background checkpointer usually
/// has copied nearly everything by then).
const AUTOCHECKPOINT_BYTES: i64 = 64 << 20;

fn connect(url: &str, path: &Path) -> Result<SqliteConnection, StorageError> {
    SqliteConnection::establish(url).map_err(|source| StorageError::Connect {
        path: path.to_owned(),
        source,
    })
}

/// Opens (creating if needed, mode 0600) the archive for writing, locks it, runs migrations.
pub fn open_rw(path: &Path) -> Result<Archive, StorageError> {
    let found = claim(path, inspect(path)?)?;
    match found {
        Found::Nothing => {}
        Found::Sqlite => drop(judge_read_only(path)?),
        // An empty file becomes an archive: owner-only, as a new one is created.
        Found::Empty => make_private(path)?,
    }
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| StorageError::Io {
            path: path.to_owned(),
            source,
        })?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(StorageError::Locked {
                path: path.to_owned(),
            })
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(StorageError::Io {
                path: path.to_owned(),
                source,
            })
        }
    }
    let mut conn = connect(&path.to_string_lossy(), path)?;
    if matches!(found, Found::Sqlite) {
        check_ours(&mut conn, path)?;
    }
    if !matches!(found, Found::Sqlite) {
        // Only a new file can take a page size. Rows (raw JSON) are ~1 KB, and concurrent
        // channels insert at dozens of places in the table at once: each insert point's page is
        // rewritten to the WAL by every transaction, splits move rows between neighbours, and
        // the checkpoint copies it all again. The largest pages make those the fewest: SQLite
        // alone storing an `unthrottled` run's rows took a quarter to a third less machine time
        // than with 8 KiB pages, and the benchmark ran about a quarter faster (bench/RESULTS.md).
        conn.batch_execute(&format!("PRAGMA page_size = {NEW_PAGE_SIZE};"))
            .map_err(sqlite_err(path, "setting the page size"))?;
    }
    // WAL with synchronous=NORMAL: a commit is durable against a process crash (kill -9) and
    // the database is never corrupted by a power loss. A 16 MiB page cache holds the B-tree
    // paths that concurrent channels insert into.
    conn.batch_execute(
        "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA cache_size = -16384;",
    )
    .map_err(sqlite_err(path, "setting pragmas"))?;
    // A large auto-checkpoint threshold rewrites hot pages (B-tree edges, checkpoints) into the
    // database far less often; it counts pages, so it follows the file's own page size (older
    // archives keep the size they were made with).
    let page_size = queries::pragma_int(&mut conn, "page_size")
        .map_err(sqlite_err(path, "reading the page size"))?;
    conn.batch_execute(&format!(
        "PRAGMA wal_autocheckpoint = {};",
        AUTOCHECKPOINT_BYTES / page_size.max(512)
    ))
    .map_err(sqlite_err(path, "setting pragmas"))?;
    conn.run_pending_migrations(MIGRATIONS)
        .map_err(|e| StorageError::Migration {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    Ok(Archive {
        conn,
        path: path.to_owned(),
        _lock: lock,
    })
}

/// Removes an archive this run created and never used (the token was rejected): a failed
/// first run leaves no empty archive behind.
pub fn remove_new_archive(path: &Path) {
    for suffix in ["-wal", "-shm", ""] {
        let _ = std::fs::remove_file(sibling(path, suffix));
    }
}

/// Whether writing to `other` would overwrite the archive at `archive` or one of the files
/// SQLite keeps beside it (`-wal`, `-shm`, `-journal`): an output path must never be one.
pub fn overlaps_archive(archive: &Path, other: &Path) -> bool {
    ["", "-wal", "-shm", "-journal"].iter().any(|suffix| {
        let mut name = archive.as_os_str().to_owned();
        name.push(suffix);
        same_file(Path::new(&name), other)
    })
}

/// Two paths naming one file: the same inode when both exist (hard links, symlinks), else the
/// same place once their directories are resolved.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::MetadataExt;
        return (x.dev(), x.ino()) == (y.dev(), y.ino());
    }
    let place = |p: &Path| -> Option<PathBuf> {
        if let Ok(full) = std::fs::canonicalize(p) {
            return Some(full);
        }
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        Some(
            std::fs::canonicalize(dir.unwrap_or(Path::new(".")))
                .ok()?
                .join(p.file_name()?),
        )
    };
    matches!((place(a), place(b)), (Some(x), Some(y)) if x == y)
}

/// Opens an existing archive read-only (for `status` and `export`); never creates or migrates.
pub fn open_ro(path: &Path) -> Result<SqliteConnection, StorageError> {
    match inspect(path)? {
        Found::Nothing | Found::Empty => {
            return Err(StorageError::Missing {
                path: path.to_owned(),
            })
        }
        Found::Sqlite => {}
    }
    let mut conn = judge_read_only(path)?;
    conn.batch_execute("PRAGMA busy_timeout = 10000;")
        .map_err(sqlite_err(path, "setting pragmas"))?;
    // A blank SQLite file (or one whose first run was killed before its migrations) passes as
    // ours, to be set up by `archive`; there is nothing in it to read yet.
    let tables = queries::table_names(&mut conn).map_err(sqlite_err(path, "reading the schema"))?;
    if !tables.iter().any(|t| t == "archive_meta") {
        return Err(StorageError::Missing {
            path: path.to_owned(),
        });
    }
    Ok(conn)
}

/// Judges an existing SQLite file without writing to it, and returns the read-only connection
/// that did. A read-only connection to a database in WAL mode creates `-wal` and `-shm` files
/// next to it and, unable to checkpoint, leaves them there; so the file is judged first through
/// an immutable connection, which reads the main file alone and creates nothing: exact while no
/// `-wal` exists (nothing can be in a WAL then). A read-write connection would be worse: it
/// recovers a leftover WAL into the main file and deletes it when it closes. A file that is not
/// ours is refused without a trace.
fn judge_read_only(path: &Path) -> Result<SqliteConnection, StorageError> {
    let mut probe = None;
    if !sibling(path, "-wal").exists() {
        let mut immutable = connect(&file_uri(path, "mode=ro&immutable=1"), path)?;
        check_ours(&mut immutable, path)?;
        probe = Some(immutable);
    }
    let ordinary = connect(&read_only_uri(path), path).and_then(|mut conn| {
        check_ours(&mut conn, path)?;
        Ok(conn)
    });
    match (ordinary, probe) {
        (Ok(conn), _) => Ok(conn),
        // No WAL, and none can be made (a read-only directory or file system, where the
        // ordinary connection cannot create its `-shm`): nothing is writing, so the immutable
        // connection reads the archive exactly.
        (Err(_), Some(immutable)) => Ok(immutable),
        (Err(e), None) => Err(e),
    }
}

/// `archive.db` → `archive.db-wal` (SQLite's naming of its side files).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A `file:` URI that opens the path read-only; `?`, `#` and `%` would otherwise be URI syntax.
fn read_only_uri(path: &Path) -> String {
    file_uri(path, "mode=ro")
}

fn file_uri(path: &Path, query: &str) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            '%' => uri.push_str("%25"),
            c => uri.push(c),
        }
    }
    uri.push('?');
    uri.push_str(query);
    uri
}

fn make_private(path: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StorageError::Io {
                path: path.to_owned(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Creates the archive file if nothing was found (`Nothing` then means: new, ours). A file
/// someone else made between our look and our create is looked at again and judged like any
/// file that was there before: a foreign database is refused, not migrated.
fn claim(path: &Path, found: Found) -> Result<Found, StorageError> {
    match found {
        Found::Nothing if !create_private(path)? => inspect(path),
        found => Ok(found),
    }
}

/// Creates a new file, owner-only; `false` if a file already exists there.
fn create_private(path: &Path) -> Result<bool, StorageError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The archive holds a community's private messages: owner-only from the first byte.
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(StorageError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection of another program that has run `sql` on the database at `path`.
    fn other_program(path: &Path, sql: &str) -> SqliteConnection {
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute(sql).unwrap();
        conn
    }

    /// Opens `path` for writing, which must be refused as not ours with the file unchanged.
    fn refused_untouched(path: &Path) -> StorageError {
        let before = std::fs::read(path).unwrap();
        let err = open_rw(path).unwrap_err();
        assert!(matches!(err, StorageError::NotOurs { .. }), "{err}");
        assert!(std::fs::read(path).unwrap() == before, "file unchanged");
        err
    }

    #[test]
    fn an_output_path_that_is_the_archive_or_its_companions_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        std::fs::write(&db, b"x").unwrap();
        assert!(overlaps_archive(&db, &db));
        // Another spelling of the same file, a hard link, a companion not yet created.
        let dotted = dir.path().join(".").join("a.db");
        assert!(overlaps_archive(&db, &dotted));
        let link = dir.path().join("link.db");
        std::fs::hard_link(&db, &link).unwrap();
        assert!(overlaps_archive(&db, &link));
        assert!(overlaps_archive(&db, &dir.path().join("a.db-wal")));
        // Neither existing yet: compared by place.
        let fresh = dir.path().join("new.db");
        assert!(overlaps_archive(&fresh, &dir.path().join("new.db")));
        assert!(!overlaps_archive(&db, &dir.path().join("out.jsonl")));
    }

    #[test]
    fn read_only_uri_escapes_uri_syntax() {
        assert_eq!(
            read_only_uri(Path::new("/tmp/a?b#c%d.db")),
            "file:/tmp/a%3fb%23c%25d.db?mode=ro"
        );
    }

    #[test]
    fn fresh_archive_is_created_private_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(open_rw(&path).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(open_rw(&path).unwrap());
        open_ro(&path).unwrap();
        // An empty file someone made (`touch a.db`) becomes just as private.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let touched = dir.path().join("touched.db");
            std::fs::write(&touched, b"").unwrap();
            std::fs::set_permissions(&touched, std::fs::Permissions::from_mode(0o644)).unwrap();
            drop(open_rw(&touched).unwrap());
            let mode = std::fs::metadata(&touched).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_database_created_between_our_look_and_our_create_is_judged_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        // Another program's database appears after `inspect` saw nothing.
        let looked = inspect(&path).unwrap();
        drop(other_program(&path, "CREATE TABLE notes (body TEXT);"));
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(claim(&path, looked).unwrap(), Found::Sqlite));
        let Err(err) = judge_read_only(&path) else {
            panic!("a foreign database was accepted")
        };
        assert!(matches!(err, StorageError::NotOurs { .. }), "{err}");
        assert!(std::fs::read(&path).unwrap() == before);
        // Nothing there: created, owner-only, and ours to set up.
        let new = dir.path().join("new.db");
        assert!(matches!(
            claim(&new, Found::Nothing).unwrap(),
            Found::Nothing
        ));
        assert!(new.exists());
    }

    #[test]
    fn new_archives_take_large_pages_and_old_ones_keep_theirs() {
        let settings = |archive: &mut Archive| {
            let size = queries::pragma_int(&mut archive.conn, "page_size").unwrap();
            // A pragma with a side effect has no table-valued form.
            #[derive(QueryableByName)]
            struct Every {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                wal_autocheckpoint: i64,
            }
            let every = diesel::sql_query("PRAGMA wal_autocheckpoint")
                .get_result::<Every>(&mut archive.conn)
                .unwrap();
            (size, every.wal_autocheckpoint)
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        assert_eq!(settings(&mut open_rw(&path).unwrap()), (65536, 1024));
        // An archive made by an older version, with 8 KiB pages: the same WAL size in bytes.
        let old = dir.path().join("old.db");
        let mut conn = other_program(&old, "PRAGMA page_size = 8192; PRAGMA journal_mode = WAL;");
        conn.run_pending_migrations(MIGRATIONS).unwrap();
        drop(conn);
        assert_eq!(settings(&mut open_rw(&old).unwrap()), (8192, 8192));
    }

    #[test]
    fn second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let _first = open_rw(&path).unwrap();
        assert!(matches!(open_rw(&path), Err(StorageError::Locked { .. })));
    }

    #[test]
    fn foreign_files_are_refused_and_left_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.db");
        std::fs::write(&text, b"just some text, not a database").unwrap();
        assert!(matches!(open_rw(&text), Err(StorageError::NotOurs { .. })));
        assert_eq!(
            std::fs::read(&text).unwrap(),
            b"just some text, not a database"
        );

        let other = dir.path().join("other.db");
        drop(other_program(
            &other,
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);",
        ));
        let err = refused_untouched(&other);
        assert!(err.to_string().contains("users"));
        assert!(matches!(open_ro(&other), Err(StorageError::NotOurs { .. })));

        // No table at all, only a view: still someone else's.
        let views = dir.path().join("views.db");
        drop(other_program(&views, "CREATE VIEW answer AS SELECT 42;"));
        let err = refused_untouched(&views);
        assert!(err.to_string().contains("answer (view)"), "{err}");
        assert!(matches!(open_ro(&views), Err(StorageError::NotOurs { .. })));
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn reading_a_foreign_wal_database_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        drop(other_program(
            &path,
            "PRAGMA journal_mode = WAL; CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');",
        ));
        assert_eq!(listing(dir.path()), ["other.db"]);
        let before = std::fs::read(&path).unwrap();
        let Err(err) = open_ro(&path) else {
            panic!("a foreign database was opened")
        };
        assert!(matches!(err, StorageError::NotOurs { .. }), "{err}");
        assert_eq!(listing(dir.path()), ["other.db"], "no -wal or -shm left");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(matches!(open_rw(&path), Err(StorageError::NotOurs { .. })));
        assert_eq!(listing(dir.path()), ["other.db"]);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn an_empty_database_another_program_marked_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        drop(other_program(
            &path,
            "PRAGMA application_id = 1234; PRAGMA user_version = 9;",
        ));
        let err = refused_untouched(&path);
        assert!(err.to_string().contains("application_id = 1234"), "{err}");
    }

    #[test]
    fn a_foreign_database_with_a_leftover_wal_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let conn = other_program(
            &path,
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
             CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');",
        );
        // What the other program leaves if it dies now: its files, the WAL holding what it
        // wrote. (The `-shm` index is scratch space every reader touches; it holds no data.)
        let left = dir.path().join("left.db");
        for suffix in ["", "-wal", "-shm"] {
            std::fs::copy(sibling(&path, suffix), sibling(&left, suffix)).unwrap();
        }
        drop(conn);
        let files = || ["", "-wal"].map(|s| std::fs::read(sibling(&left, s)).unwrap_or_default());
        let before = files();
        assert!(!before[1].is_empty(), "a WAL with content");
        let err = open_rw(&left).unwrap_err();
        assert!(matches!(err, StorageError::NotOurs { .. }), "{err}");
        assert!(err.to_string().contains("notes"), "{err}");
        assert!(files() == before, "main file and WAL unchanged");
    }

    #[test]
    fn our_archive_is_still_read_while_it_has_a_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut writer = open_rw(&path).unwrap();
        writer
            .conn
            .batch_execute("INSERT INTO archive_meta (key, value) VALUES ('probe', 'in the wal');")
            .unwrap();
        // The writer is still open: the row lives in the -wal, and the reader must see it.
        let mut reader = open_ro(&path).unwrap();
        assert_eq!(
            queries::meta_value(&mut reader, "probe")
                .unwrap()
                .as_deref(),
            Some("in the wal")
        );
    }

    #[test]
    fn write_failures_of_the_disk_stop_the_run() {
        use diesel::result::{DatabaseErrorKind, Error};
        let sqlite = |message: &str| StorageError::Sqlite {
            path: PathBuf::from("a.db"),
            context: "saving a batch",
            source: Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned())),
        };
        assert!(sqlite("database or disk is full").is_disk_full());
        assert!(sqlite("disk I/O error").is_disk_full());
        assert!(!sqlite("UNIQUE constraint failed: messages.id").is_disk_full());
        assert!(!StorageError::Closed.is_disk_full());
    }

    #[test]
    fn disk_errors_say_what_to_do() {
        let err = StorageError::Migration {
            path: PathBuf::from("a.db"),
            message: "disk I/O error".into(),
        };
        assert!(err.to_string().contains("is the disk full"), "{err}");
        let err = StorageError::Migration {
            path: PathBuf::from("a.db"),
            message: "no such table: x".into(),
        };
        assert!(!err.to_string().contains("disk"), "{err}");
        for (sqlite_says, what_to_do) in [
            ("database is locked", "another program"),
            ("database disk image is malformed", "damaged"),
            ("file is not a database", "damaged"),
            ("attempt to write a readonly database", "cannot be written"),
            ("Read-only file system (os error 30)", "cannot be written"),
        ] {
            let err = StorageError::Migration {
                path: PathBuf::from("a.db"),
                message: sqlite_says.into(),
            };
            assert!(err.to_string().contains(what_to_do), "{err}");
        }
    }

    /// A damaged archive is named as such, with what to do, not only in SQLite's words.
    #[test]
    fn a_damaged_archive_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(open_rw(&path).unwrap());
        // Garbage over every page but the first (the header and the schema's root).
        let mut bytes = std::fs::read(&path).unwrap();
        let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
        let page = if page == 1 { 65_536 } else { page };
        for (i, b) in bytes.iter_mut().enumerate().skip(page) {
            *b = (i % 251) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = match open_ro(&path) {
            Err(e) => e.to_string(),
            Ok(mut conn) => queries::channel_status(&mut conn)
                .map_err(sqlite_err(&path, "reading the archive"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        };
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn an_archive_killed_before_its_first_migration_is_taken_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(other_program(
            &path,
            "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);",
        ));
        // Nothing to read yet: `status` and `export` say so instead of failing on a missing table.
        assert!(matches!(open_ro(&path), Err(StorageError::Missing { .. })));
        let mut archive = open_rw(&path).unwrap();
        assert_eq!(
            queries::meta_value(&mut archive.conn, "application")
                .unwrap()
                .as_deref(),
            Some(APPLICATION)
        );
    }

    /// Users (and stage 2) may add views or triggers to an archive: it stays ours.
    #[test]
    fn an_archive_with_a_users_view_is_still_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(open_rw(&path).unwrap());
        drop(other_program(
            &path,
            "CREATE VIEW recent AS SELECT id FROM messages ORDER BY id DESC LIMIT 10;",
        ));
        drop(open_rw(&path).unwrap());
        assert!(open_ro(&path).is_ok());
    }

    /// The version of the migration that moved messages out of snowflake order.
    const ARRIVAL_ORDER: &str = "20261208000000";

    /// An archive at the schema before [`ARRIVAL_ORDER`], made by the embedded migrations
    /// that came before it (with the pragmas `open_rw` sets on a new file).
    fn archive_before_arrival_order(path: &Path) -> SqliteConnection {
        use diesel::migration::Migration;
        let mut conn = other_program(
            path,
            "PRAGMA page_size = 65536; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
        );
        for migration in conn.pending_migrations(MIGRATIONS).unwrap() {
            if migration.name().version().to_string().as_str() >= ARRIVAL_ORDER {
                break;
            }
            conn.run_migration(&migration).unwrap();
        }
        conn
    }

    #[derive(QueryableByName, Debug, PartialEq)]
    struct StoredRow {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        channel_id: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        guild_id: Option<i64>,
        #[diesel(sql_type = diesel::sql_types::Text)]
        content: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        edited_at: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        message_type: i32,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        reference_message_id: Option<i64>,
        #[diesel(sql_type = diesel::sql_types::Text)]
        raw_json: String,
    }

    fn stored_rows(conn: &mut SqliteConnection) -> Vec<StoredRow> {
        diesel::sql_query(
            "SELECT id, channel_id, guild_id, content, edited_at, message_type, \
             reference_message_id, raw_json FROM messages ORDER BY id",
        )
        .load(conn)
        .unwrap()
    }

    /// The migration to rows in arrival order rebuilds `messages`: every row and column must
    /// survive it exactly (raw JSON byte for byte), a user's view on the table must keep
    /// working, and the snowflake must stay unique.
    #[test]
    fn moving_messages_to_arrival_order_loses_nothing_and_keeps_a_users_view() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut old = archive_before_arrival_order(&path);
        old.batch_execute(
            r#"INSERT INTO messages VALUES
                 (30, 7, 1, 2, 'bob', 0, 're: "x" é 👨‍👩‍👧', 't30', 't31', 19, 20,
                  '{"id":"30","content":"re: "x" é 👨‍👩‍👧","x_future":{"a":[1]}}'),
                 (20, 7, 1, 3, 'robot', 1, '', 't20', NULL, 0, NULL,
                  '{ "id" : "20" ,
                     "content":"" }'),
                 (25, 8, NULL, 2, 'bob', 0, 'dm', 't25', NULL, 0, NULL, '{"id":"25"}');
               INSERT INTO checkpoints (channel_id, last_message_id, last_fetch_timestamp,
                   total_messages, complete, updated_at) VALUES (7, 30, 'now', 2, 1, 'now');
               CREATE VIEW recent AS SELECT id, content FROM messages ORDER BY id DESC;"#,
        )
        .unwrap();
        let before = stored_rows(&mut old);
        drop(old);

        let mut archive = open_rw(&path).unwrap();
        assert_eq!(stored_rows(&mut archive.conn), before);
        #[derive(QueryableByName)]
        struct Sql {
            #[diesel(sql_type = diesel::sql_types::Text)]
            sql: String,
        }
        let ddl = diesel::sql_query("SELECT sql FROM sqlite_master WHERE name = 'messages'")
            .get_result::<Sql>(&mut archive.conn)
            .unwrap()
            .sql;
        assert!(!ddl.contains("PRIMARY KEY"), "{ddl}");
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
        }
        let recent: Vec<i64> = diesel::sql_query("SELECT id FROM recent")
            .load::<Id>(&mut archive.conn)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(recent, [30, 25, 20]);
        // Still at most once: a message archived again is ignored.
        let again = diesel::sql_query(
            "INSERT OR IGNORE INTO messages (id, channel_id, author_id, author_name, \
             author_is_bot, content, created_at, message_type, raw_json) \
             VALUES (30, 7, 2, 'bob', 0, 'other', 't', 0, '{}')",
        )
        .execute(&mut archive.conn)
        .unwrap();
        assert_eq!(again, 0);
        assert_eq!(stored_rows(&mut archive.conn), before);
    }

    #[test]
    fn a_blank_sqlite_file_has_no_archive_to_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blank.db");
        drop(other_program(&path, "PRAGMA user_version = 0; VACUUM;"));
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        let Err(err) = open_ro(&path) else {
            panic!("a blank file opened as an archive");
        };
        assert!(matches!(err, StorageError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("no archive here"), "{err}");
    }

    #[test]
    fn newer_schema_is_refused_and_left_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        {
            let mut archive = open_rw(&path).unwrap();
            archive
                .conn
                .batch_execute(
                    "PRAGMA journal_mode = DELETE; \
                     INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000');",
                )
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = open_rw(&path).unwrap_err();
        assert!(matches!(err, StorageError::NewerSchema { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
