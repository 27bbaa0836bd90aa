//! The SQLite store: the connection pool for readers, the one writer
//! connection, pragmas and migrations. It owns *how* SQL reaches the disk,
//! not what the SQL says: concept modules write their own tables inside the
//! transactions this module hands them.
//!
//! Durability contract: WAL mode, `synchronous=FULL` by default, so a
//! committed write is on disk before [`Store::write`] returns. Every write is
//! one `BEGIN IMMEDIATE` transaction on the writer connection; dropping it on
//! error rolls everything back, so a refused operation changes nothing.
//! Readers use pooled connections opened `query_only`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use r2d2_sqlite::SqliteConnectionManager;

use crate::error::{Error, Result};

/// `schema.sql`, migration 0: the one source of truth for the schema.
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");

/// Forward-only migrations, applied in order; index + 1 is the
/// `PRAGMA user_version` after applying it. Append only: never edit or
/// reorder an entry once released.
const MIGRATIONS: &[&str] = &[SCHEMA_SQL];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits on another process's lock before failing.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Reader connections in the pool, at most.
pub const READ_POOL_SIZE_MAX: u32 = 16;

/// SQLite's `synchronous` setting for the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync the WAL on every commit: an acknowledged write survives power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: faster, may lose the last commits on power
    /// loss (never corrupts). For throwaway and test databases.
    Normal,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The database file; created if missing.
    pub path: PathBuf,
    /// The durability setting (default FULL).
    pub synchronous: Synchronous,
    /// Reader connections in the pool (1..=[`READ_POOL_SIZE_MAX`]).
    pub read_pool_size: u32,
}

impl StoreOptions {
    /// Default options for the database at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        StoreOptions {
            path: path.as_ref().to_path_buf(),
            synchronous: Synchronous::Full,
            read_pool_size: 4,
        }
    }
}

/// An open database: one writer, a pool of readers.
pub struct Store {
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn configure(conn: &Connection, synchronous: Synchronous) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", synchronous.pragma_value())?;
    Ok(())
}

impl Store {
    /// Opens (creating if missing) and migrates the database.
    ///
    /// Fails with [`Error::SchemaTooNew`] if the file was written by a newer
    /// build, leaving it untouched.
    pub fn open(options: &StoreOptions) -> Result<Store> {
        let synchronous = options.synchronous;
        let mut writer = Connection::open_with_flags(
            &options.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&writer, synchronous)?;
        let mode: String = writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::invalid(
                "db",
                format!("could not enable WAL journal mode (got {mode})"),
            ));
        }
        migrate(&mut writer)?;

        let manager = SqliteConnectionManager::file(&options.path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(move |conn| {
                configure(conn, synchronous)?;
                conn.pragma_update(None, "query_only", true)
            });
        let readers = r2d2::Pool::builder()
            .max_size(options.read_pool_size.clamp(1, READ_POOL_SIZE_MAX))
            .min_idle(Some(0))
            .build(manager)?;
        Ok(Store {
            writer: Mutex::new(writer),
            readers,
            path: options.path.clone(),
        })
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `op` in one `BEGIN IMMEDIATE` transaction on the writer and
    /// commits if it returns `Ok`; on `Err` (or a panic) the transaction is
    /// dropped and rolled back, leaving the database as it was.
    pub fn write<T>(&self, op: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock_writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = op(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `op` on a pooled read-only connection.
    pub fn read<T>(&self, op: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.get()?;
        op(&conn)
    }

    /// Copies the database, consistent as of one instant, to `dest` (which
    /// must not exist) with `VACUUM INTO`.
    pub fn backup(&self, dest: &Path) -> Result<()> {
        let conn = self.lock_writer();
        let dest = dest
            .to_str()
            .ok_or_else(|| Error::invalid("dest", "path is not valid UTF-8"))?;
        conn.execute("VACUUM INTO ?1", [dest])?;
        Ok(())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a write closure poisons the mutex, but the
        // transaction it held was rolled back when it unwound: the
        // connection is clean, so take it back.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Applies every migration the database has not seen, each in its own
/// immediate transaction together with its `user_version` bump.
fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read inside the lock: another process may have migrated meanwhile.
        let current: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if current > index as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_twice_and_keeps_the_schema_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions::new(dir.path().join("a.db"));
        drop(Store::open(&options).expect("first open"));
        let store = Store::open(&options).expect("second open migrates nothing");
        let version: i64 = store
            .read(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
            .expect("read version");
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = store
            .read(|c| Ok(c.pragma_query_value(None, "journal_mode", |r| r.get(0))?))
            .expect("read mode");
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .read(|c| Ok(c.pragma_query_value(None, "synchronous", |r| r.get(0))?))
            .expect("read synchronous");
        assert_eq!(sync, 2, "FULL is 2");
    }

    #[test]
    fn refuses_a_database_from_a_newer_build_and_leaves_it_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.db");
        {
            let conn = Connection::open(&path).expect("open raw");
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .expect("bump version");
        }
        let err = Store::open(&StoreOptions::new(&path)).expect_err("newer schema refused");
        assert!(matches!(err, Error::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1));
        let conn = Connection::open(&path).expect("reopen raw");
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))
            .expect("count tables");
        assert_eq!(tables, 0, "nothing was created in the newer database");
    }

    #[test]
    fn readers_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StoreOptions::new(dir.path().join("r.db"))).expect("open");
        let result = store.read(|c| Ok(c.execute("DELETE FROM accounts", [])?));
        assert!(result.is_err(), "pooled connections are query_only");
    }

    #[test]
    fn a_failed_write_rolls_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StoreOptions::new(dir.path().join("w.db"))).expect("open");
        let result: Result<()> = store.write(|tx| {
            tx.execute(
                "INSERT INTO accounts (id, name, plan, created_at) VALUES ('a', 'n', 'p', 0)",
                [],
            )?;
            Err(Error::invalid("test", "refused"))
        });
        assert!(result.is_err());
        let count: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))?))
            .expect("count");
        assert_eq!(count, 0);
    }

    #[test]
    fn bundled_sqlite_is_past_the_wal_reset_bug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StoreOptions::new(dir.path().join("v.db"))).expect("open");
        let version: String = store
            .read(|c| Ok(c.query_row("SELECT sqlite_version()", [], |r| r.get(0))?))
            .expect("version");
        let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
        assert!(parts >= vec![3, 51, 3], "SQLite {version} has the WAL-reset bug");
    }
}
