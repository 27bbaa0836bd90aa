//! The SQLite store: the connection pool for readers, the one writer and
//! its group commit, pragmas and migrations. It owns *how* SQL reaches the
//! disk, not what the SQL says: concept modules write their own tables
//! inside the [`Tx`] this module hands them.
//!
//! Durability contract: WAL mode, `synchronous=FULL` by default, so a write
//! is on disk before [`Store::write`] returns.
//!
//! Group commit (leader/follower): concurrent [`Store::write`] calls queue
//! their operations (a bounded queue: callers block when it is full). The
//! caller that finds no batch running becomes the leader: it takes up to
//! [`BATCH_OPS_MAX`] queued operations, runs them in one `BEGIN IMMEDIATE`
//! transaction with a savepoint each, and commits once, so many operations
//! share one fsync; then it takes the next batch, and after
//! [`LEADER_BATCHES_MAX`] batches hands the lead to the owner of the next
//! queued operation so that no caller waits on others forever. An operation
//! that fails rolls back to its savepoint (it changes nothing) while the
//! others commit; each caller gets its own result only after the commit is
//! durable. An uncontended write runs on its caller's thread, with no hop.
//! Readers use pooled connections opened `query_only`.

use std::any::Any;
use std::collections::VecDeque;
use std::ops::Deref;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{
    CachedStatement, Connection, MappedRows, OpenFlags, Params, Row, Rows, Statement,
    TransactionBehavior,
};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::ids::{self, IdSource, OsIds};

/// `schema.sql`, the one source of truth for the schema: migration 0, then
/// every later migration after a line starting with [`MIGRATION_MARKER`].
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");

/// Starts each migration after the first in `schema.sql`, at the beginning
/// of a line, followed by its number.
pub const MIGRATION_MARKER: &str = "-- @migration ";

/// The schema version this build writes: how many migrations `schema.sql`
/// holds, counted at compile time.
pub const SCHEMA_VERSION: i64 = migration_count(SCHEMA_SQL);

/// Migration 0 plus one per line that starts with [`MIGRATION_MARKER`].
const fn migration_count(sql: &str) -> i64 {
    let (sql, marker) = (sql.as_bytes(), MIGRATION_MARKER.as_bytes());
    let mut count = 1;
    let mut at = 0;
    while at + marker.len() <= sql.len() {
        if at == 0 || sql[at - 1] == b'\n' {
            let mut matched = 0;
            while matched < marker.len() && sql[at + matched] == marker[matched] {
                matched += 1;
            }
            if matched == marker.len() {
                count += 1;
            }
        }
        at += 1;
    }
    count
}

/// Forward-only migrations, split out of [`SCHEMA_SQL`] in order; index + 1
/// is the `PRAGMA user_version` after applying it. Append only: never edit
/// or reorder one once released.
fn migrations() -> Vec<&'static str> {
    let marker = format!("\n{MIGRATION_MARKER}");
    let mut sections = Vec::new();
    let mut rest = SCHEMA_SQL;
    while let Some(at) = rest.find(&marker) {
        sections.push(&rest[..at + 1]);
        rest = &rest[at + 1..];
    }
    sections.push(rest);
    sections
}

/// How long a connection waits on another process's lock before failing.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;

/// SQLite page cache per connection, in KiB.
pub const CACHE_KIB: i64 = 8 * 1024;

/// WAL pages (4 KiB each) written between automatic checkpoints; the WAL
/// file grows to about this size (32 MiB) and is then reused.
pub const WAL_AUTOCHECKPOINT_PAGES: i64 = 8_192;

/// Prepared statements each connection keeps, at most.
pub const STATEMENT_CACHE_MAX: usize = 256;

/// Reader connections in the pool, at most.
pub const READ_POOL_SIZE_MAX: u32 = 16;

/// Write operations committed together in one transaction, at most.
pub const BATCH_OPS_MAX: usize = 256;

/// Batches one leader runs before handing the lead to another caller.
pub const LEADER_BATCHES_MAX: usize = 4;

/// Write operations waiting for the writer, at most; callers beyond it
/// block until there is room (backpressure, not unbounded memory).
pub const WRITE_QUEUE_OPS_MAX: usize = 4_096;

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

/// Whether opening a store may create its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenMode {
    /// Open the database, creating it if the file does not exist.
    #[default]
    CreateIfMissing,
    /// Open an existing creditgate database only: a missing file is
    /// [`OpenProblem::Missing`] and nothing is created (for commands that
    /// only read, so that a mistyped path is not a fresh empty database).
    Existing,
}

/// Why a database file could not be used, each said once and plainly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenProblem {
    /// No file at the path (and the mode does not create one).
    Missing,
    /// The path is a directory.
    IsDirectory,
    /// The folder that would hold the file does not exist.
    ParentMissing,
    /// The file (or the folder that must hold its `-wal` and `-shm` files)
    /// cannot be written.
    ReadOnly,
    /// The file is not a creditgate database: not SQLite at all, or an
    /// SQLite database of something else.
    NotCreditgate {
        /// What was found instead.
        detail: String,
    },
    /// The file is an SQLite database too damaged to read its schema.
    Damaged {
        /// SQLite's description of the damage.
        detail: String,
    },
    /// SQLite could not open or read the file for another reason.
    Unreadable {
        /// SQLite's or the system's reason.
        detail: String,
    },
}

impl OpenProblem {
    /// One sentence naming the path and what is wrong with it.
    pub fn describe(&self, path: &Path) -> String {
        let path = path.display();
        match self {
            OpenProblem::Missing => format!("no creditgate database at {path}"),
            OpenProblem::IsDirectory => {
                format!("{path} is a directory, not a creditgate database file")
            }
            OpenProblem::ParentMissing => {
                format!("cannot create a database at {path}: its folder does not exist")
            }
            OpenProblem::ReadOnly => format!(
                "the database {path} is read-only (creditgate writes to it and to its -wal and -shm files beside it)"
            ),
            OpenProblem::NotCreditgate { detail } => {
                format!("{path} is not a creditgate database ({detail})")
            }
            OpenProblem::Damaged { detail } => format!(
                "the database {path} is damaged ({detail}); restore the last copy made with `creditgate backup`"
            ),
            OpenProblem::Unreadable { detail } => format!("cannot open the database {path}: {detail}"),
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The database file; created if missing unless `mode` says otherwise.
    pub path: PathBuf,
    /// Whether a missing database is created (default) or refused.
    pub mode: OpenMode,
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
            mode: OpenMode::CreateIfMissing,
            synchronous: Synchronous::Full,
            read_pool_size: 4,
        }
    }

    /// The same options, refusing to create a missing database
    /// ([`OpenMode::Existing`]).
    pub fn existing(mut self) -> Self {
        self.mode = OpenMode::Existing;
        self
    }
}

/// A write transaction (strictly: one operation's savepoint inside the
/// batch's transaction). Only the store makes one, so a function that takes
/// `&Tx` is known to run inside the write path.
///
/// A `Tx` reads like a [`ReadOnly`] (it dereferences to one, so a read
/// helper taking `&ReadOnly` takes `&Tx` too) and adds the statements that
/// write. It never hands out the raw connection.
pub struct Tx<'a> {
    conn: &'a Connection,
    ids: &'a dyn IdSource,
    read: ReadOnly<'a>,
}

/// The statements that write. Only the store's own tests and the
/// workspace's tests (feature `test-support`) call the ones marked so: the
/// core's writers prepare theirs through the cache.
impl<'a> Tx<'a> {
    fn new(conn: &'a Connection, ids: &'a dyn IdSource) -> Tx<'a> {
        Tx {
            conn,
            ids,
            read: ReadOnly { conn },
        }
    }

    /// Prepares a statement that may write, through the statement cache.
    pub fn prepare_cached(&self, sql: &str) -> rusqlite::Result<CachedStatement<'a>> {
        self.conn.prepare_cached(sql)
    }

    /// Prepares a statement that may write.
    #[cfg(any(test, feature = "test-support"))]
    pub fn prepare(&self, sql: &str) -> rusqlite::Result<Statement<'a>> {
        self.conn.prepare(sql)
    }

    /// Runs one statement that may write; returns the rows it changed.
    #[cfg(any(test, feature = "test-support"))]
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.conn.execute(sql, params)
    }

    /// Runs statements without parameters.
    #[cfg(any(test, feature = "test-support"))]
    pub fn execute_batch(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.execute_batch(sql)
    }

    /// Sets a pragma (`schema`: `None` for the main database).
    #[cfg(any(test, feature = "test-support"))]
    pub fn pragma_update<V: rusqlite::ToSql>(
        &self,
        schema: Option<&str>,
        name: &str,
        value: V,
    ) -> rusqlite::Result<()> {
        self.conn.pragma_update(schema, name, value)
    }

    /// Sets a pragma and reads the value it reports back.
    #[cfg(any(test, feature = "test-support"))]
    pub fn pragma_update_and_check<T, V, F>(
        &self,
        schema: Option<&str>,
        name: &str,
        value: V,
        f: F,
    ) -> rusqlite::Result<T>
    where
        V: rusqlite::ToSql,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.conn.pragma_update_and_check(schema, name, value, f)
    }
}

impl Tx<'_> {
    /// A fresh id (`prefix` and 32 hex digits) from the store's
    /// [`IdSource`]. Never for secrets.
    pub fn new_id(&self, prefix: &str) -> String {
        ids::random_id_from(self.ids, prefix)
    }

    /// A fresh time-ordered id from the store's [`IdSource`] (see
    /// [`ids::sortable_id_from`]). Never for secrets.
    pub fn new_sortable_id(&self, prefix: &str, now: UnixMillis) -> String {
        ids::sortable_id_from(self.ids, prefix, now)
    }

    /// Runs `op` under a nested savepoint: its changes are kept if it
    /// returns `Ok` and undone if it returns `Err`, while the enclosing
    /// operation's other changes stay. For operations that apply many
    /// independent items in one transaction (the worker's answers).
    ///
    /// If SQLite rolled the whole transaction back by itself (it may on a
    /// full disk or an I/O error), `op`'s error is returned as it is and
    /// [`Tx::is_open`] turns false: the caller must then fail too, since
    /// any further statement would run outside the batch.
    pub fn nested<T>(&self, op: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        if !self.is_open() {
            return Err(transaction_lost());
        }
        run_cached(self.conn, "SAVEPOINT nested_item")?;
        match op(self) {
            Ok(value) => {
                run_cached(self.conn, "RELEASE nested_item")?;
                Ok(value)
            }
            Err(err) if !self.is_open() => Err(err),
            Err(err) => {
                run_cached(self.conn, "ROLLBACK TO nested_item")?;
                run_cached(self.conn, "RELEASE nested_item")?;
                Err(err)
            }
        }
    }

    /// Whether the batch's transaction is still open. SQLite may roll it
    /// back by itself after some errors (a full disk, an I/O error); an
    /// operation that goes on after an error must check this first.
    pub fn is_open(&self) -> bool {
        !self.conn.is_autocommit()
    }
}

/// The error of an operation whose transaction SQLite rolled back.
fn transaction_lost() -> Error {
    Error::CommitFailed {
        message: "SQLite rolled the transaction back".to_owned(),
    }
}

impl<'a> Deref for Tx<'a> {
    type Target = ReadOnly<'a>;

    fn deref(&self) -> &ReadOnly<'a> {
        &self.read
    }
}

/// A connection that can only read: the statements it prepares can query
/// and cannot execute, so a write through it does not compile. Readers
/// ([`Store::read`]) and the steps that only check (`verify`, a signed
/// agent request's checks) get one; a [`Tx`] dereferences to one.
pub struct ReadOnly<'a> {
    conn: &'a Connection,
}

impl<'a> ReadOnly<'a> {
    /// Prepares a query through the statement cache.
    pub fn prepare_cached(&self, sql: &str) -> rusqlite::Result<Query<'a>> {
        Ok(Query(QueryStatement::Cached(
            self.conn.prepare_cached(sql)?,
        )))
    }

    /// Prepares a query.
    pub fn prepare(&self, sql: &str) -> rusqlite::Result<Query<'a>> {
        Ok(Query(QueryStatement::Plain(self.conn.prepare(sql)?)))
    }

    /// Runs a query and maps its first row.
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.conn.query_row(sql, params, f)
    }

    /// Reads a pragma's value (`schema`: `None` for the main database).
    #[cfg(any(test, feature = "test-support"))]
    pub fn pragma_query_value<T, F>(
        &self,
        schema: Option<&str>,
        name: &str,
        f: F,
    ) -> rusqlite::Result<T>
    where
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.conn.pragma_query_value(schema, name, f)
    }

    /// Starts a read transaction, so that the reads until
    /// [`ReadOnly::end_snapshot`] see one snapshot. It writes nothing.
    pub fn begin_snapshot(&self) -> rusqlite::Result<()> {
        self.conn.execute_batch("BEGIN")
    }

    /// Ends the read transaction, if SQLite has not ended it already.
    pub fn end_snapshot(&self) -> rusqlite::Result<()> {
        if self.conn.is_autocommit() {
            Ok(())
        } else {
            self.conn.execute_batch("COMMIT")
        }
    }
}

/// A prepared query of a [`ReadOnly`]: rows in, nothing executed.
pub struct Query<'a>(QueryStatement<'a>);

enum QueryStatement<'a> {
    Plain(Statement<'a>),
    Cached(CachedStatement<'a>),
}

impl<'a> Query<'a> {
    fn statement(&mut self) -> &mut Statement<'a> {
        match &mut self.0 {
            QueryStatement::Plain(stmt) => stmt,
            QueryStatement::Cached(stmt) => stmt,
        }
    }

    /// The first row, mapped.
    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.statement().query_row(params, f)
    }

    /// Every row, mapped.
    pub fn query_map<T, P, F>(&mut self, params: P, f: F) -> rusqlite::Result<MappedRows<'_, F>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.statement().query_map(params, f)
    }

    /// How many parameters the query takes.
    #[cfg(any(test, feature = "test-support"))]
    pub fn parameter_count(&mut self) -> usize {
        self.statement().parameter_count()
    }

    /// The rows, to step through.
    pub fn query<P: Params>(&mut self, params: P) -> rusqlite::Result<Rows<'_>> {
        self.statement().query(params)
    }
}

/// Runs a statement without parameters through the statement cache: the
/// write path's transaction and savepoint statements run several times per
/// batch, and parsing them each time showed in profiles.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Why a batch did not commit.
#[derive(Debug, Clone)]
struct BatchFailure {
    /// SQLite's reason.
    message: String,
    /// The disk (or the page limit) was full: callers get
    /// [`Error::StorageFull`], not a generic failure.
    storage_full: bool,
}

impl BatchFailure {
    fn of(err: &rusqlite::Error) -> BatchFailure {
        BatchFailure {
            message: err.to_string(),
            storage_full: crate::error::is_disk_full(err),
        }
    }

    /// What a caller whose operation did not commit is told.
    fn error(&self) -> Error {
        if self.storage_full {
            Error::StorageFull {
                detail: self.message.clone(),
            }
        } else {
            Error::CommitFailed {
                message: self.message.clone(),
            }
        }
    }
}

/// How a write operation's result reaches its caller, once the batch's
/// fate is known: called with `Some(failure)` if the batch did not commit.
type Deliver = Box<dyn FnOnce(Option<&BatchFailure>) + Send>;

/// What running an operation said: whether to keep its changes, whether it
/// failed on a full disk, and how to deliver its result.
type Ran = (bool, bool, Deliver);

/// Runs an operation.
type RunOp = Box<dyn FnOnce(&Tx<'_>) -> Ran + Send>;

/// One queued write operation.
struct WriteOp {
    /// Runs the operation; says whether to keep its changes and how to
    /// deliver its result.
    run: RunOp,
    /// Tells the caller its operation never ran because the batch failed.
    abort: Deliver,
    /// Asks the caller to lead the next batches.
    promote: Box<dyn Fn() + Send>,
}

/// What reaches a waiting caller: its result, or the lead.
enum Message<T> {
    Done(Delivery<T>),
    Lead,
}

/// The queue of operations and whether a leader is running batches.
struct Queue {
    ops: VecDeque<WriteOp>,
    leader: bool,
}

/// What a caller receives: its own result, or the panic its operation
/// raised (re-raised in the caller's thread).
type Delivery<T> = std::result::Result<Result<T>, Box<dyn Any + Send>>;

/// Counters of the write path, for benchmarks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Batches the writer has run (committed or not).
    pub batches: u64,
    /// Operations the writer has run.
    pub ops: u64,
    /// Operations queued and not yet taken by the writer.
    pub queued: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    ops: AtomicU64,
    queued: AtomicU64,
}

/// An open database: one write connection behind a group-commit queue, a
/// pool of readers.
pub struct Store {
    counters: Counters,
    queue: Mutex<Queue>,
    queue_has_room: Condvar,
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
    /// Where the random bits of minted ids come from.
    ids: Arc<dyn IdSource>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn configure(conn: &Connection, synchronous: Synchronous) -> rusqlite::Result<()> {
    // rusqlite keeps 16 by default; the write path alone uses more than
    // that, and a miss re-parses the SQL (it showed in profiles).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_MAX);
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", synchronous.pragma_value())?;
    // Savepoint journals (one per batched operation) stay in memory
    // instead of spilling to temporary files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoint after this many WAL pages rather than SQLite's 1,000: the
    // hot pages (index right edges, the wallets) are rewritten by every
    // batch, and a checkpoint copies only each page's latest version, so
    // fewer, larger checkpoints copy far fewer pages per job.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    Ok(())
}

impl Store {
    /// Opens (creating if missing) and migrates the database.
    ///
    /// Fails with [`Error::SchemaTooNew`] if the file was written by a newer
    /// build, leaving it untouched.
    /// A file that cannot be used fails with [`Error::Database`] saying
    /// why ([`OpenProblem`]); with [`OpenMode::Existing`] a missing file is
    /// refused and nothing is created.
    pub fn open(options: &StoreOptions) -> Result<Store> {
        let synchronous = options.synchronous;
        let path = &options.path;
        let unusable = |problem: OpenProblem| Error::Database {
            path: path.clone(),
            problem,
        };
        precheck(path, options.mode).map_err(unusable)?;
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if options.mode == OpenMode::CreateIfMissing {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut writer = Connection::open_with_flags(path, flags)
            .map_err(|err| unusable(classify_open_error(path, &err)))?;
        if writer.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(unusable(OpenProblem::ReadOnly));
        }
        configure(&writer, synchronous).map_err(|err| unusable(classify_open_error(path, &err)))?;
        check_is_creditgate(&writer, options.mode).map_err(|err| match err {
            CheckError::Problem(problem) => unusable(problem),
            CheckError::Sqlite(err) => unusable(classify_open_error(path, &err)),
        })?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|err| unusable(classify_open_error(path, &err)))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::internal(format!(
                "could not enable WAL journal mode on {} (got {mode})",
                options.path.display()
            )));
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
            .build(manager)
            .map_err(Error::pool)?;
        Ok(Store {
            counters: Counters::default(),
            queue: Mutex::new(Queue {
                ops: VecDeque::new(),
                leader: false,
            }),
            queue_has_room: Condvar::new(),
            writer: Mutex::new(writer),
            readers,
            path: options.path.clone(),
            ids: Arc::new(OsIds),
        })
    }

    /// Replaces where minted ids come from (by default the OS).
    pub(crate) fn set_id_source(&mut self, ids: Arc<dyn IdSource>) {
        self.ids = ids;
    }

    /// Runs `op` inside the write path and returns its result once it is
    /// durable. `op` runs under its own savepoint in a batch: if it returns
    /// `Err` (or panics) its changes are rolled back and nothing it did
    /// remains; if it returns `Ok` its changes commit with the batch. A
    /// panic in `op` is re-raised in the caller's thread.
    pub fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T> + Send + 'static,
    {
        // Room for the lead and the result.
        let (deliver, delivery) = mpsc::sync_channel::<Message<T>>(2);
        let abort_deliver = deliver.clone();
        let promote_deliver = deliver.clone();
        let write_op = WriteOp {
            run: Box::new(move |tx: &Tx<'_>| {
                let outcome = catch_unwind(AssertUnwindSafe(|| op(tx)));
                let keep = matches!(outcome, Ok(Ok(_)));
                let full = matches!(outcome, Ok(Err(Error::StorageFull { .. })));
                let deliver_result: Deliver =
                    Box::new(move |batch_failure: Option<&BatchFailure>| {
                        let delivered = match (outcome, batch_failure) {
                            (Ok(Ok(_)), Some(failure)) => Ok(Err(failure.error())),
                            (Ok(result), _) => Ok(result),
                            (Err(panic), _) => Err(panic),
                        };
                        // The caller may have gone away; nothing to do then.
                        let _ = deliver.send(Message::Done(delivered));
                    });
                (keep, full, deliver_result)
            }),
            abort: Box::new(move |batch_failure: Option<&BatchFailure>| {
                let error = batch_failure.map_or_else(
                    || Error::CommitFailed {
                        message: "the batch failed".to_owned(),
                    },
                    BatchFailure::error,
                );
                let _ = abort_deliver.send(Message::Done(Ok(Err(error))));
            }),
            promote: Box::new(move || {
                let _ = promote_deliver.send(Message::Lead);
            }),
        };
        let lead = {
            let mut queue = self.lock_queue();
            while queue.ops.len() >= WRITE_QUEUE_OPS_MAX {
                queue = self
                    .queue_has_room
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            queue.ops.push_back(write_op);
            self.counters.queued.fetch_add(1, Ordering::SeqCst);
            !std::mem::replace(&mut queue.leader, true)
        };
        if lead {
            self.lead();
        }
        loop {
            match delivery.recv() {
                Ok(Message::Done(Ok(result))) => return result,
                Ok(Message::Done(Err(panic))) => resume_unwind(panic),
                Ok(Message::Lead) => self.lead(),
                Err(_) => return Err(Error::WriterStopped),
            }
        }
    }

    /// Runs batches from the queue until it is empty, or hands the lead on
    /// after [`LEADER_BATCHES_MAX`] batches. Called only by the one caller
    /// that holds the lead (`Queue::leader`).
    fn lead(&self) {
        let mut conn = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for _ in 0..LEADER_BATCHES_MAX {
            let batch: Vec<WriteOp> = {
                let mut queue = self.lock_queue();
                assert!(queue.leader, "only the leader runs batches");
                if queue.ops.is_empty() {
                    queue.leader = false;
                    return;
                }
                let take = queue.ops.len().min(BATCH_OPS_MAX);
                queue.ops.drain(..take).collect()
            };
            self.queue_has_room.notify_all();
            let taken = batch.len();
            assert!(
                (1..=BATCH_OPS_MAX).contains(&taken),
                "a batch takes 1..={BATCH_OPS_MAX} operations, not {taken}"
            );
            let was_queued = self
                .counters
                .queued
                .fetch_sub(taken as u64, Ordering::SeqCst);
            assert!(
                was_queued >= taken as u64,
                "{taken} operations taken, only {was_queued} counted as queued"
            );
            self.counters.batches.fetch_add(1, Ordering::SeqCst);
            self.counters.ops.fetch_add(taken as u64, Ordering::SeqCst);
            let delivered = run_batch(&mut conn, self.ids.as_ref(), batch);
            assert_eq!(
                delivered, taken,
                "every operation of a batch gets exactly one result"
            );
        }
        // Decide under the lock, so a caller queueing now either sees the
        // lead still taken (and is served) or takes it itself.
        let mut queue = self.lock_queue();
        assert!(queue.leader, "the lead is handed on by its holder only");
        match queue.ops.front() {
            Some(next) => (next.promote)(),
            None => queue.leader = false,
        }
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // Operations run outside this lock and catch their own panics, so a
        // poisoned queue still holds a consistent list.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The write path's counters.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            batches: self.counters.batches.load(Ordering::SeqCst),
            ops: self.counters.ops.load(Ordering::SeqCst),
            queued: self.counters.queued.load(Ordering::SeqCst),
        }
    }

    /// Runs `op` on a pooled connection (opened `query_only`), through a
    /// [`ReadOnly`].
    pub fn read<T>(&self, op: impl FnOnce(&ReadOnly<'_>) -> Result<T>) -> Result<T> {
        let conn = self.readers.get().map_err(Error::pool)?;
        op(&ReadOnly { conn: &conn })
    }

    /// Copies the database, consistent as of one instant, to `dest` (which
    /// must not exist) with `VACUUM INTO`: one read transaction, so writes
    /// that go on meanwhile are either wholly in the copy or not at all.
    pub fn backup(&self, dest: &Path) -> Result<()> {
        if dest.symlink_metadata().is_ok() {
            return Err(Error::invalid(
                "dest",
                format!("{} already exists; choose a new path", dest.display()),
            ));
        }
        let dest = dest
            .to_str()
            .ok_or_else(|| Error::invalid("dest", "path is not valid UTF-8"))?;
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
        conn.execute("VACUUM INTO ?1", [dest])?;
        Ok(())
    }
}

/// What can be told about the path before SQLite sees it.
fn precheck(path: &Path, mode: OpenMode) -> std::result::Result<(), OpenProblem> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(OpenProblem::IsDirectory),
        // The permission bits, not access(2): root may write anyway, but a
        // file its operator marked read-only is not ours to write.
        Ok(meta) if meta.permissions().readonly() => Err(OpenProblem::ReadOnly),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => match mode {
            OpenMode::Existing => Err(OpenProblem::Missing),
            OpenMode::CreateIfMissing => {
                let parent = path
                    .parent()
                    .filter(|parent| !parent.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                if parent.is_dir() {
                    Ok(())
                } else {
                    Err(OpenProblem::ParentMissing)
                }
            }
        },
        Err(err) => Err(OpenProblem::Unreadable {
            detail: err.to_string(),
        }),
    }
}

/// Names what SQLite's failure to open or first read `path` means.
fn classify_open_error(path: &Path, err: &rusqlite::Error) -> OpenProblem {
    use rusqlite::ErrorCode;
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => OpenProblem::NotCreditgate {
            detail: "not an SQLite database file".into(),
        },
        Some(ErrorCode::ReadOnly) => OpenProblem::ReadOnly,
        Some(ErrorCode::DatabaseCorrupt) => OpenProblem::Damaged {
            detail: err.to_string(),
        },
        Some(ErrorCode::CannotOpen) if path.is_dir() => OpenProblem::IsDirectory,
        Some(ErrorCode::CannotOpen) if !path.exists() => OpenProblem::Missing,
        _ => OpenProblem::Unreadable {
            detail: err.to_string(),
        },
    }
}

/// Why [`check_is_creditgate`] refused.
enum CheckError {
    Problem(OpenProblem),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for CheckError {
    fn from(err: rusqlite::Error) -> Self {
        CheckError::Sqlite(err)
    }
}

/// Refuses an SQLite file that is not ours: one that has tables but no
/// schema version (someone else's database, which migrating would litter),
/// and, when the database must already exist, an empty one.
fn check_is_creditgate(conn: &Connection, mode: OpenMode) -> std::result::Result<(), CheckError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > 0 {
        return Ok(());
    }
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
        [],
        |row| row.get(0),
    )?;
    if tables > 0 {
        return Err(CheckError::Problem(OpenProblem::NotCreditgate {
            detail: format!("an SQLite database with {tables} table(s) and no creditgate schema"),
        }));
    }
    if mode == OpenMode::Existing {
        return Err(CheckError::Problem(OpenProblem::NotCreditgate {
            detail: "an empty file".into(),
        }));
    }
    Ok(())
}

/// Runs one batch in one transaction and delivers every result after the
/// commit (or its failure). A failed batch leaves the connection out of any
/// transaction, so the next batch starts clean (a full disk does not break
/// the writer for good). Returns how many results it delivered: one per
/// operation, which the leader asserts.
fn run_batch(conn: &mut Connection, ids: &dyn IdSource, batch: Vec<WriteOp>) -> usize {
    let batch_len = batch.len();
    assert!(
        (1..=BATCH_OPS_MAX).contains(&batch_len),
        "a batch holds 1..={BATCH_OPS_MAX} operations, not {batch_len}"
    );
    let mut ran: Vec<Deliver> = Vec::with_capacity(batch_len);
    let mut pending = batch.into_iter();
    if !conn.is_autocommit() {
        // A transaction left open by an earlier failure: drop it.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let failure = match run_cached(conn, "BEGIN IMMEDIATE") {
        Err(err) => Some(BatchFailure::of(&err)),
        Ok(()) => {
            let mut failure = None;
            for op in pending.by_ref() {
                match run_one(conn, ids, op) {
                    Ok(deliver) => ran.push(deliver),
                    Err((message, deliver)) => {
                        ran.push(deliver);
                        failure = Some(message);
                        break;
                    }
                }
            }
            let settled = match failure {
                Some(failure) => Err(failure),
                None => run_cached(conn, "COMMIT").map_err(|err| BatchFailure::of(&err)),
            };
            match settled {
                Ok(()) => None,
                Err(failure) => {
                    // Roll the whole batch back; if even that fails, the
                    // next batch rolls back first.
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    Some(failure)
                }
            }
        }
    };
    assert!(
        failure.is_some() || ran.len() == batch_len,
        "a committed batch ran every operation"
    );
    let mut delivered = 0;
    for deliver in ran {
        deliver(failure.as_ref());
        delivered += 1;
    }
    for op in pending {
        (op.abort)(failure.as_ref());
        delivered += 1;
    }
    delivered
}

/// Runs one operation under its own savepoint: kept if it succeeded,
/// rolled back if it failed. Fails (and so fails the batch) if SQLite
/// cannot settle the savepoint, or rolled the batch's transaction back by
/// itself (then no later operation may run: it would run outside the
/// batch). Either way it hands back the one way to deliver the result.
fn run_one(
    conn: &Connection,
    ids: &dyn IdSource,
    op: WriteOp,
) -> std::result::Result<Deliver, (BatchFailure, Deliver)> {
    if conn.is_autocommit() {
        let lost = BatchFailure {
            message: "SQLite rolled the transaction back".to_owned(),
            storage_full: false,
        };
        return Err((lost, op.abort));
    }
    if let Err(err) = run_cached(conn, "SAVEPOINT batch_op") {
        return Err((BatchFailure::of(&err), op.abort));
    }
    let (keep, full, deliver) = (op.run)(&Tx::new(conn, ids));
    let settled = if keep {
        run_cached(conn, "RELEASE batch_op")
    } else {
        run_cached(conn, "ROLLBACK TO batch_op").and_then(|()| run_cached(conn, "RELEASE batch_op"))
    };
    match settled {
        Ok(()) => Ok(deliver),
        Err(err) => {
            let mut failure = BatchFailure::of(&err);
            // The operation's own full disk is why its savepoint is gone.
            failure.storage_full |= full;
            Err((failure, deliver))
        }
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
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    // A migration that rebuilds a table (SQLite cannot change a CHECK in
    // place) drops the old one: with foreign keys on, that would delete
    // through every reference. So migrations run with them off, as SQLite's
    // own procedure for altering tables says, and each checks them with
    // `foreign_key_check` before it commits.
    conn.pragma_update(None, "foreign_keys", false)?;
    let migrated = apply_migrations(conn, found);
    conn.pragma_update(None, "foreign_keys", true)?;
    migrated
}

fn apply_migrations(conn: &mut Connection, found: i64) -> Result<()> {
    for (index, sql) in migrations().into_iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read inside the lock: another process may have migrated meanwhile.
        let current: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if current > index as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        let dangling: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })?;
        if dangling != 0 {
            return Err(Error::CorruptData {
                detail: format!(
                    "migration {} would leave {dangling} references dangling; nothing was changed",
                    index
                ),
            });
        }
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
    fn schema_sql_holds_numbered_migrations_in_order() {
        let migrations = migrations();
        assert_eq!(migrations.len() as i64, SCHEMA_VERSION);
        assert!(!migrations[0]
            .lines()
            .any(|line| line.starts_with(MIGRATION_MARKER)));
        for (index, sql) in migrations.iter().enumerate().skip(1) {
            assert!(
                sql.starts_with(&format!("{MIGRATION_MARKER}{index}:")),
                "migration {index} is numbered in order"
            );
        }
    }

    #[test]
    fn migrates_a_database_written_by_the_first_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).expect("open raw");
            conn.execute_batch(migrations()[0]).expect("schema 0");
            conn.pragma_update(None, "user_version", 1)
                .expect("version");
        }
        let store = Store::open(&StoreOptions::new(&path)).expect("migrates");
        let (version, indexes): (i64, Vec<String>) = store
            .read(|c| {
                let version = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
                let mut stmt = c.prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'
                       AND name LIKE 'jobs_%' ORDER BY name",
                )?;
                let names = stmt.query_map([], |r| r.get(0))?;
                Ok((version, names.collect::<rusqlite::Result<_>>()?))
            })
            .expect("read");
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(
            indexes,
            [
                "jobs_account_created",
                "jobs_created",
                "jobs_deadline",
                "jobs_due",
                "jobs_provider_task"
            ]
        );
    }

    #[test]
    fn migration_8_rebuilds_topups_keeping_rows_and_what_references_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v7.db");
        {
            let conn = Connection::open(&path).expect("open raw");
            conn.pragma_update(None, "foreign_keys", true).expect("fk");
            for sql in &migrations()[..8] {
                conn.execute_batch(sql).expect("migrations 0 to 7");
            }
            conn.pragma_update(None, "user_version", 8)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO accounts (id, name, plan, created_at) VALUES ('acct_1', 'a', 'free', 0);
                 INSERT INTO topups (id, account_id, rail, credits_micros, amount_minor,
                                     currency, status, external_id, created_at)
                 VALUES ('top_1', 'acct_1', 'stripe', 5000000, 5, 'usd', 'open', 'cs_1', 7);
                 INSERT INTO payment_events (rail, event_id, kind, outcome, topup_id, received_at)
                 VALUES ('stripe', 'evt_1', 'checkout.session.completed', 'ignored', 'top_1', 8);",
            )
            .expect("a stripe top-up and its event");
        }
        let store = Store::open(&StoreOptions::new(&path)).expect("migrates");
        let (kept, rails_allowed, fk): (String, i64, i64) = store
            .read(|c| {
                let kept = c.query_row(
                    "SELECT p.external_id || '/' || e.event_id FROM topups p
                       JOIN payment_events e ON e.topup_id = p.id WHERE p.id = 'top_1'",
                    [],
                    |r| r.get(0),
                )?;
                let allowed = c.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'topups'
                       AND sql LIKE '%''x402''%' AND sql LIKE '%''settling''%'",
                    [],
                    |r| r.get(0),
                )?;
                let fk = c.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
                Ok((kept, allowed, fk))
            })
            .expect("read");
        assert_eq!(kept, "cs_1/evt_1");
        assert_eq!(rails_allowed, 1);
        assert_eq!(fk, 1, "foreign keys are back on after migrating");
        let writer_fk: i64 = store
            .write(|tx| Ok(tx.pragma_query_value(None, "foreign_keys", |r| r.get(0))?))
            .expect("write");
        assert_eq!(writer_fk, 1, "on the writer too");
    }

    #[test]
    fn migration_9_rebuilds_transfers_keeping_rows_chain_and_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v8.db");
        {
            let conn = Connection::open(&path).expect("open raw");
            conn.pragma_update(None, "foreign_keys", true).expect("fk");
            for sql in &migrations()[..9] {
                conn.execute_batch(sql).expect("migrations 0 to 8");
            }
            conn.pragma_update(None, "user_version", 9)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO accounts (id, name, plan, created_at) VALUES ('acct_1', 'a', 'free', 0);
                 INSERT INTO ledger_accounts (id, code, kind, account_id, created_at)
                 VALUES (100, 'wallet:acct_1', 'wallet', 'acct_1', 0);
                 INSERT INTO transfers (seq, id, kind, debit_account, credit_account, amount,
                                        created_at, chain)
                 VALUES (3, 'g1', 'grant', (SELECT id FROM ledger_accounts
                                             WHERE code = 'system:grants'), 100, 5, 1, x'aa'),
                        (7, 'h1', 'hold', 100, (SELECT id FROM ledger_accounts
                                                 WHERE code = 'system:revenue'), 2, 2, x'bb');
                 INSERT INTO open_holds (transfer_id, wallet, amount, deadline)
                 VALUES ('h1', 100, 2, NULL);
                 UPDATE sqlite_sequence SET seq = 9 WHERE name = 'transfers';",
            )
            .expect("two transfers and an open hold");
        }
        let store = Store::open(&StoreOptions::new(&path)).expect("migrates");
        let (rows, sequence, triggers): (String, i64, i64) = store
            .read(|c| {
                let rows = c.query_row(
                    "SELECT group_concat(seq || ':' || id || ':' || hex(chain), ',')
                       FROM (SELECT * FROM transfers ORDER BY seq)",
                    [],
                    |r| r.get(0),
                )?;
                let sequence = c.query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'transfers'",
                    [],
                    |r| r.get(0),
                )?;
                let triggers = c.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'
                       AND tbl_name = 'transfers'",
                    [],
                    |r| r.get(0),
                )?;
                Ok((rows, sequence, triggers))
            })
            .expect("read");
        assert_eq!(rows, "3:g1:AA,7:h1:BB");
        assert_eq!(sequence, 9, "the AUTOINCREMENT sequence is kept");
        assert_eq!(triggers, 2, "transfers stay immutable");
        let reversal = store.write(|tx| {
            Ok(tx.execute(
                "INSERT INTO transfers (id, kind, debit_account, credit_account, amount,
                                        refund_of, created_at, chain)
                 VALUES ('r1', 'reversal', 100, (SELECT id FROM ledger_accounts
                                                  WHERE code = 'system:grants'), 1, 'g1', 3, x'cc')",
                [],
            )?)
        });
        assert!(reversal.is_ok(), "the new kind is allowed: {reversal:?}");
        let update = store.write(|tx| Ok(tx.execute("UPDATE transfers SET amount = 9", [])?));
        assert!(update.is_err(), "still immutable");
    }

    #[test]
    fn migration_13_drops_the_derived_unique_indexes_keeping_every_job_and_charge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v12.db");
        let autoindexes = |conn: &Connection, table: &str| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1
                   AND name LIKE 'sqlite_autoindex%'",
                [table],
                |r| r.get(0),
            )
            .expect("count")
        };
        {
            let conn = Connection::open(&path).expect("open raw");
            conn.pragma_update(None, "foreign_keys", true).expect("fk");
            for sql in &migrations()[..13] {
                conn.execute_batch(sql).expect("migrations 0 to 12");
            }
            conn.pragma_update(None, "user_version", 13)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO accounts (id, name, plan, created_at) VALUES ('acct_1', 'a', 'free', 0);
                 INSERT INTO ledger_accounts (id, code, kind, account_id, created_at)
                 VALUES (100, 'wallet:acct_1', 'wallet', 'acct_1', 0);
                 INSERT INTO price_versions (version, catalog, digest, imported_at)
                 VALUES ('v1', '{}', 'd', 0);
                 INSERT INTO transfers (seq, id, kind, debit_account, credit_account, amount,
                                        created_at, chain)
                 VALUES (1, 'hold:job_1', 'hold', 100, (SELECT id FROM ledger_accounts
                                                         WHERE code = 'system:revenue'), 2, 1, x'aa');
                 INSERT INTO jobs (id, account_id, request_id, fingerprint, request, product,
                                   model, price_version, estimate_micros, estimate, hold_id,
                                   usage_event_id, provider, upstream_model, status,
                                   next_run_at, deadline, output_token, created_at, updated_at,
                                   charged_micros, finished_at)
                 VALUES ('job_1', 'acct_1', 'r1', 'f', '{}', 'image', 'm', 'v1', 2, '{}',
                         'hold:job_1', 'use_1', 'fixture', 'm', 'pending', 1, 9, 't1', 1, 1,
                         NULL, NULL),
                        ('job_2', 'acct_1', 'r2', 'f', '{}', 'image', 'm', 'v1', 0, '{}',
                         NULL, 'use_2', 'fixture', 'm', 'succeeded', 1, 9, 't2', 1, 2, 0, 2);
                 INSERT INTO usage_events (id, job_id, account_id, transfer_id, amount, model,
                                           created_at)
                 VALUES ('use_2', 'job_2', 'acct_1', NULL, 0, 'm', 2);",
            )
            .expect("a held job and a free charged one");
            assert_eq!(autoindexes(&conn, "jobs"), 4);
            assert_eq!(autoindexes(&conn, "usage_events"), 3);
        }
        let store = Store::open(&StoreOptions::new(&path)).expect("migrates");
        let (jobs, usage): (String, String) = store
            .read(|c| {
                let jobs = c.query_row(
                    "SELECT group_concat(id || ':' || coalesce(hold_id, '-') || ':'
                                         || usage_event_id || ':' || status, ',')
                       FROM (SELECT * FROM jobs ORDER BY id)",
                    [],
                    |r| r.get(0),
                )?;
                let usage = c.query_row(
                    "SELECT group_concat(id || ':' || job_id || ':' || amount, ',')
                       FROM usage_events",
                    [],
                    |r| r.get(0),
                )?;
                Ok((jobs, usage))
            })
            .expect("read");
        assert_eq!(
            jobs,
            "job_1:hold:job_1:use_1:pending,job_2:-:use_2:succeeded"
        );
        assert_eq!(usage, "use_2:job_2:0");
        let raw = Connection::open(&path).expect("raw");
        assert_eq!(
            autoindexes(&raw, "jobs"),
            2,
            "the id and (account, request_id) stay unique"
        );
        assert_eq!(autoindexes(&raw, "usage_events"), 2, "the id and the job");
        // What the dropped indexes guarded is now a CHECK on the derivation.
        let foreign_hold = store.write(|tx| {
            Ok(tx.execute(
                "INSERT INTO transfers (id, kind, debit_account, credit_account, amount,
                                        created_at, chain)
                 VALUES ('hold:other', 'hold', 100, (SELECT id FROM ledger_accounts
                                                      WHERE code = 'system:revenue'), 2, 3, x'bb');
                 ",
                [],
            )?)
        });
        assert!(foreign_hold.is_ok(), "{foreign_hold:?}");
        let reused = store.write(|tx| {
            Ok(tx.execute(
                "INSERT INTO jobs (id, account_id, request_id, fingerprint, request, product,
                                   model, price_version, estimate_micros, estimate, hold_id,
                                   usage_event_id, provider, upstream_model, status,
                                   next_run_at, deadline, output_token, created_at, updated_at)
                 VALUES ('job_3', 'acct_1', 'r3', 'f', '{}', 'image', 'm', 'v1', 2, '{}',
                         'hold:other', 'use_3', 'fixture', 'm', 'pending', 1, 9, 't3', 3, 3)",
                [],
            )?)
        });
        assert!(reused.is_err(), "a job's hold is its own: {reused:?}");
    }

    /// The `OpenEphemeral` opcodes a statement compiles to: each builds a
    /// temporary B-tree every time the statement runs.
    fn temporary_btrees(conn: &Connection, sql: &str) -> usize {
        let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).expect("explain");
        let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
        let ops = stmt
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(1)
            })
            .expect("opcodes")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("opcodes");
        ops.iter().filter(|op| *op == "OpenEphemeral").count()
    }

    /// What every job's life writes: no CHECK builds a temporary B-tree.
    const JOB_LIFE_WRITES: [&str; 3] = [
        "INSERT INTO transfers (id, kind, debit_account, credit_account, amount, pending_id,
                                refund_of, deadline, created_at, chain)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        "INSERT INTO jobs DEFAULT VALUES",
        "UPDATE jobs SET status = ?2, finished_at = ?3 WHERE id = ?1",
    ];

    #[test]
    fn migration_14_rewrites_the_checks_of_a_job_s_writes_without_temporary_btrees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v14.db");
        {
            let conn = Connection::open(&path).expect("open raw");
            for sql in &migrations()[..14] {
                conn.execute_batch(sql).expect("migrations 0 to 13");
            }
            conn.pragma_update(None, "user_version", 14)
                .expect("version");
            for sql in JOB_LIFE_WRITES {
                assert!(temporary_btrees(&conn, sql) > 0, "before: {sql}");
            }
            conn.execute_batch(
                "INSERT INTO accounts (id, name, plan, created_at) VALUES ('acct_1', 'a', 'free', 0);
                 INSERT INTO ledger_accounts (id, code, kind, account_id, created_at)
                 VALUES (100, 'wallet:acct_1', 'wallet', 'acct_1', 0);
                 INSERT INTO price_versions (version, catalog, digest, imported_at)
                 VALUES ('v1', '{}', 'd', 0);
                 INSERT INTO transfers (seq, id, kind, debit_account, credit_account, amount,
                                        created_at, chain)
                 VALUES (1, 'hold:job_1', 'hold', 100, (SELECT id FROM ledger_accounts
                                                         WHERE code = 'system:revenue'), 2, 1, x'aa');
                 INSERT INTO jobs (id, account_id, request_id, fingerprint, request, product,
                                   model, price_version, estimate_micros, estimate, hold_id,
                                   usage_event_id, provider, upstream_model, status,
                                   next_run_at, deadline, output_token, created_at, updated_at)
                 VALUES ('job_1', 'acct_1', 'r1', 'f', '{}', 'image', 'm', 'v1', 2, '{}',
                         'hold:job_1', 'use_1', 'fixture', 'm', 'pending', 1, 9, 't1', 1, 1);",
            )
            .expect("a held job");
        }
        let store = Store::open(&StoreOptions::new(&path)).expect("migrates");
        let raw = Connection::open(&path).expect("raw");
        for sql in JOB_LIFE_WRITES {
            assert_eq!(temporary_btrees(&raw, sql), 0, "after: {sql}");
        }
        let check: String = raw
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok", "the kept rows meet the rewritten CHECKs");
        // The rewritten constraints refuse what the old ones did.
        let refused = [
            "INSERT INTO transfers (id, kind, debit_account, credit_account, amount, created_at,
                                    chain)
             VALUES ('t2', 'gift', 100, 1, 2, 3, x'bb')",
            "INSERT INTO transfers (id, kind, debit_account, credit_account, amount, created_at,
                                    chain)
             VALUES ('t3', 'capture', 100, 1, 2, 3, x'bb')",
            "UPDATE jobs SET status = 'lost' WHERE id = 'job_1'",
            "UPDATE jobs SET status = 'failed' WHERE id = 'job_1'",
        ];
        for sql in refused {
            let result = store.write(|tx| Ok(tx.execute(sql, [])?));
            assert!(result.is_err(), "still refused: {sql}");
        }
        let failed = store.write(|tx| {
            Ok(tx.execute(
                "UPDATE jobs SET status = 'failed', finished_at = 5 WHERE id = 'job_1'",
                [],
            )?)
        });
        assert_eq!(failed.expect("a finished job"), 1);
        let leftover: i64 = raw
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'migration_14'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(leftover, 0);
    }

    #[test]
    fn migration_3_ships_the_plans_and_frees_accounts_of_the_old_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v3.db");
        {
            let conn = Connection::open(&path).expect("open raw");
            for sql in &migrations()[..3] {
                conn.execute_batch(sql).expect("migrations 0 to 2");
            }
            conn.pragma_update(None, "user_version", 3)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO accounts (id, name, plan, created_at) VALUES
                   ('acct_a', 'a', 'free', 0), ('acct_b', 'b', 'pro', 0);",
            )
            .expect("accounts of the old default and of another plan");
        }
        let store = Store::open(&StoreOptions::new(&path)).expect("migrates");
        let (plans, accounts): (Vec<String>, Vec<String>) = store
            .read(|c| {
                let mut stmt = c.prepare("SELECT name FROM plans ORDER BY name")?;
                let plans = stmt.query_map([], |r| r.get(0))?;
                let plans = plans.collect::<rusqlite::Result<_>>()?;
                let mut stmt = c.prepare("SELECT plan FROM accounts ORDER BY id")?;
                let accounts = stmt.query_map([], |r| r.get(0))?;
                Ok((plans, accounts.collect::<rusqlite::Result<_>>()?))
            })
            .expect("read");
        assert_eq!(plans, ["enterprise", "free", "pro"]);
        assert_eq!(
            accounts,
            ["none", "pro"],
            "no account gains caps by upgrading"
        );
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
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .expect("count tables");
        assert_eq!(tables, 0, "nothing was created in the newer database");
    }

    #[test]
    fn a_database_that_cannot_use_wal_is_a_server_fault_not_invalid_request() {
        // An in-memory database has no WAL: SQLite answers "memory".
        let err = Store::open(&StoreOptions::new(":memory:")).expect_err("no WAL");
        assert_eq!(err.code(), "internal", "{err}");
        assert!(err.is_server_fault());
        assert!(err.to_string().contains("WAL"), "{err}");
    }

    #[test]
    fn an_existing_only_open_refuses_a_missing_file_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("typo.db");
        let err = Store::open(&StoreOptions::new(&path).existing()).expect_err("refused");
        assert!(
            matches!(
                &err,
                Error::Database {
                    problem: OpenProblem::Missing,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("no creditgate database at {}", path.display())
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
        drop(Store::open(&StoreOptions::new(&path)).expect("created"));
        Store::open(&StoreOptions::new(&path).existing()).expect("now it exists");
    }

    #[test]
    fn open_names_what_is_wrong_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let problem = |path: &Path, mode: OpenMode| {
            let mut options = StoreOptions::new(path);
            options.mode = mode;
            match Store::open(&options) {
                Err(Error::Database { problem, .. }) => problem,
                other => panic!("{path:?}: {other:?}"),
            }
        };
        assert_eq!(
            problem(dir.path(), OpenMode::CreateIfMissing),
            OpenProblem::IsDirectory
        );
        assert_eq!(
            problem(
                &dir.path().join("missing").join("a.db"),
                OpenMode::CreateIfMissing
            ),
            OpenProblem::ParentMissing
        );
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![b'x'; 4096]).expect("write");
        assert!(matches!(
            problem(&junk, OpenMode::CreateIfMissing),
            OpenProblem::NotCreditgate { .. }
        ));
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").expect("write");
        assert!(matches!(
            problem(&empty, OpenMode::Existing),
            OpenProblem::NotCreditgate { .. }
        ));
        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .expect("open")
            .execute_batch("CREATE TABLE recipes (name TEXT)")
            .expect("create");
        assert!(matches!(
            problem(&foreign, OpenMode::CreateIfMissing),
            OpenProblem::NotCreditgate { .. }
        ));
        let readonly = dir.path().join("ro.db");
        drop(Store::open(&StoreOptions::new(&readonly)).expect("create"));
        let mut permissions = std::fs::metadata(&readonly).expect("meta").permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(&readonly, permissions).expect("chmod");
        assert_eq!(
            problem(&readonly, OpenMode::Existing),
            OpenProblem::ReadOnly
        );
    }

    #[test]
    fn readers_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StoreOptions::new(dir.path().join("r.db"))).expect("open");
        // A `ReadOnly` has no way to write; underneath, the pooled
        // connection refuses too.
        let result = store.read(|c| Ok(c.conn.execute("DELETE FROM accounts", [])?));
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
    fn a_panicking_write_rolls_back_reraises_and_leaves_the_writer_alive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StoreOptions::new(dir.path().join("p.db"))).expect("open");
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            store.write(|tx| -> Result<()> {
                tx.execute(
                    "INSERT INTO accounts (id, name, plan, created_at) VALUES ('p', 'n', 'p', 0)",
                    [],
                )?;
                panic!("bug in an operation");
            })
        }));
        assert!(panicked.is_err(), "the panic reaches the caller");
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO accounts (id, name, plan, created_at) VALUES ('q', 'n', 'p', 0)",
                    [],
                )?;
                Ok(())
            })
            .expect("the writer still works");
        let ids: Vec<String> = store
            .read(|c| {
                let mut stmt = c.prepare("SELECT id FROM accounts ORDER BY id")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .expect("ids");
        assert_eq!(ids, ["q"]);
    }

    #[test]
    fn one_failing_operation_in_a_batch_rolls_back_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(
            Store::open(&StoreOptions::new(dir.path().join("b.db"))).expect("open"),
        );
        // Hold the writer busy until all 48 operations are queued, so they
        // form one batch; every third fails after writing a row.
        let blocker = {
            let store = store.clone();
            std::thread::spawn(move || {
                let observer = store.clone();
                store.write(move |_tx| {
                    while observer.write_stats().queued < 48 {
                        std::thread::yield_now();
                    }
                    Ok(())
                })
            })
        };
        while store.write_stats().ops < 1 {
            std::thread::yield_now();
        }
        let handles: Vec<_> = (0..48)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.write(move |tx| {
                        tx.execute(
                            "INSERT INTO accounts (id, name, plan, created_at) VALUES (?1, 'n', 'p', 0)",
                            [format!("a{i:02}")],
                        )?;
                        if i % 3 == 0 {
                            return Err(Error::invalid("test", "refused"));
                        }
                        Ok(i)
                    })
                })
            })
            .collect();
        blocker.join().expect("blocker").expect("blocker op");
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect();
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), i % 3 != 0, "operation {i}: {result:?}");
        }
        let count: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))?))
            .expect("count");
        assert_eq!(count, 32, "exactly the successful operations were kept");
        let stats = store.write_stats();
        assert_eq!(
            (stats.batches, stats.ops),
            (2, 49),
            "the 48 ran as one batch"
        );
    }

    #[test]
    fn bundled_sqlite_is_past_the_wal_reset_bug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StoreOptions::new(dir.path().join("v.db"))).expect("open");
        let version: String = store
            .read(|c| Ok(c.query_row("SELECT sqlite_version()", [], |r| r.get(0))?))
            .expect("version");
        let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
        assert!(
            parts >= vec![3, 51, 3],
            "SQLite {version} has the WAL-reset bug"
        );
    }
}
