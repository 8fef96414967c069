//! The SQLite archive: opening it safely, the embedded migrations, and the queries the writer runs.
//!
//! Only the writer actor holds a read-write [`Archive`]; `status` and `export` open read-only
//! connections. Opening refuses anything that is not ours (a non-SQLite file, somebody else's
//! database, a newer schema) before writing a single byte to it.

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
    #[error("{path}: {context}: {source}")]
    Sqlite {
        path: PathBuf,
        context: &'static str,
        source: diesel::result::Error,
    },
    #[error("{path}: cannot open: {source}")]
    Connect {
        path: PathBuf,
        source: diesel::ConnectionError,
    },
    #[error("{path}: database migration failed: {message}")]
    Migration { path: PathBuf, message: String },
    #[error("the archive was already closed")]
    Closed,
    /// The test hook that simulates a crash right after a given commit fired.
    #[error("the writer was halted (test hook)")]
    Halted,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether the error says the disk (or SQLite's page budget) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::Sqlite { source, .. } if is_full(source))
    }
}

fn is_full(e: &diesel::result::Error) -> bool {
    let text = e.to_string();
    text.contains("disk is full") || text.contains("database or disk is full")
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
    if tables.is_empty() {
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

fn connect(url: &str, path: &Path) -> Result<SqliteConnection, StorageError> {
    SqliteConnection::establish(url).map_err(|source| StorageError::Connect {
        path: path.to_owned(),
        source,
    })
}

/// Opens (creating if needed, mode 0600) the archive for writing, locks it, runs migrations.
pub fn open_rw(path: &Path) -> Result<Archive, StorageError> {
    let found = inspect(path)?;
    if matches!(found, Found::Nothing) {
        create_private(path)?;
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
    conn.batch_execute(
        "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
    )
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
    let mut conn = connect(&read_only_uri(path), path)?;
    check_ours(&mut conn, path)?;
    conn.batch_execute("PRAGMA busy_timeout = 10000;")
        .map_err(sqlite_err(path, "setting pragmas"))?;
    Ok(conn)
}

/// A `file:` URI that opens the path read-only; `?`, `#` and `%` would otherwise be URI syntax.
fn read_only_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            '%' => uri.push_str("%25"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=ro");
    uri
}

fn create_private(path: &Path) -> Result<(), StorageError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The archive holds a community's private messages: owner-only from the first byte.
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        // Someone created it between our look and now: judge it like any existing file.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StorageError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        {
            let mut conn = SqliteConnection::establish(other.to_str().unwrap()).unwrap();
            conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
                .unwrap();
        }
        let before = std::fs::read(&other).unwrap();
        let err = open_rw(&other).unwrap_err();
        assert!(matches!(err, StorageError::NotOurs { .. }), "{err}");
        assert!(err.to_string().contains("users"));
        assert_eq!(std::fs::read(&other).unwrap(), before);
        assert!(matches!(open_ro(&other), Err(StorageError::NotOurs { .. })));
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
