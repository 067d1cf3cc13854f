//! The batching writer for SQLite: one thread that owns a connection and commits many small
//! writes in one transaction.
//!
//! SQLite commits one transaction at a time, and through sqlx every statement is a hop to a
//! worker thread, so writes one transaction each top out at a few thousand a second here. The
//! writer takes every write waiting in its queue (up to [`MAX_BATCH`]), runs each inside its
//! own savepoint on one `BEGIN IMMEDIATE` transaction, calling SQLite directly, commits once,
//! and only then answers each caller. A write that fails is rolled back to its savepoint and
//! does not disturb the others; if the commit fails, every write of the batch is answered with
//! the error, so nothing is reported done that was not committed.
//!
//! Used for the hot metered path ([`crate::metering::insert_metered`]); everything else goes
//! through the pool. Both coexist: SQLite serializes their transactions.

use std::collections::HashMap;
use std::ffi::c_int;

use sqlx::{Connection as _, SqliteConnection, SqlitePool};
use tokio::sync::{OnceCell, mpsc, oneshot};

use super::direct::{Param, Statement};

/// The most writes committed together.
pub const MAX_BATCH: usize = 512;
/// Writes waiting beyond this make callers wait to queue (back-pressure, bounded memory).
const QUEUE: usize = 8192;

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write: run it on the batch (or, when the batch could not begin, `None`) and get back
/// what to tell its caller once the batch's fate is known.
type Job = Box<dyn FnOnce(Option<&mut Batch>) -> Reply + Send>;

/// A handle to the writer thread; cheap to share. The thread ends when the last handle goes.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

/// The writer of an [`App`](crate::app::App), started on first use.
#[derive(Debug, Default)]
pub struct WriterSlot(OnceCell<Writer>);

impl WriterSlot {
    /// The writer for `pool`'s database, starting it if needed.
    pub async fn get(&self, pool: &SqlitePool) -> sqlx::Result<&Writer> {
        self.0.get_or_try_init(|| Writer::start(pool)).await
    }
}

impl Writer {
    /// Opens a connection like `pool`'s (same file and settings) and starts the thread.
    pub async fn start(pool: &SqlitePool) -> sqlx::Result<Writer> {
        let options = pool.connect_options();
        let conn = SqliteConnection::connect_with(&options).await?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_thread(conn, queue, ready_tx))
            .map_err(|e| sqlx::Error::Protocol(format!("starting the SQLite writer: {e}")))?;
        ready_rx
            .await
            .map_err(|_| sqlx::Error::Protocol("the SQLite writer did not start".into()))??;
        Ok(Writer { jobs })
    }

    /// Runs `work` in the next batch and returns its result once the batch is committed.
    /// `work` runs on the writer thread: it must only touch the database through `Batch` and
    /// must not block. If it returns an error, what it wrote is rolled back and the error is
    /// returned; the batch goes on.
    pub async fn run<T, E>(
        &self,
        work: impl FnOnce(&mut Batch) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<sqlx::Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |batch: Option<&mut Batch>| -> Reply {
            let outcome = match batch {
                Some(batch) => batch.in_savepoint(work),
                None => Err(sqlx::Error::Protocol("the write batch could not begin".into()).into()),
            };
            Box::new(move |committed: Result<(), String>| {
                let result = match (committed, outcome) {
                    (_, Err(e)) => Err(e),
                    (Ok(()), Ok(v)) => Ok(v),
                    (Err(message), Ok(_)) => Err(sqlx::Error::Protocol(message).into()),
                };
                // The caller may have gone (request cancelled); the write stands regardless.
                let _ = tx.send(result);
            })
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| sqlx::Error::Protocol("the SQLite writer has stopped".into()))?;
        rx.await
            .map_err(|_| sqlx::Error::Protocol("the SQLite writer dropped a write".into()))?
    }
}

/// The open transaction a write runs in, with the writer's prepared statements.
pub struct Batch {
    db: *mut libsqlite3_sys::sqlite3,
    statements: HashMap<String, Statement>,
}

/// The current row of a query, read by column index.
pub struct Row<'s>(&'s Statement);

impl Row<'_> {
    pub fn int(&self, i: c_int) -> i64 {
        self.0.int(i)
    }
    pub fn bytes(&self, i: c_int) -> Vec<u8> {
        self.0.bytes(i)
    }
    pub fn text(&self, i: c_int) -> String {
        self.0.text(i)
    }
}

impl Batch {
    fn statement(&mut self, sql: &str) -> sqlx::Result<&mut Statement> {
        if !self.statements.contains_key(sql) {
            // SAFETY: `db` is the writer thread's connection, whose handle that thread holds
            // for as long as the batch (and its statements) live.
            let stmt = unsafe { Statement::prepare(self.db, sql)? };
            self.statements.insert(sql.to_owned(), stmt);
        }
        self.statements
            .get_mut(sql)
            .ok_or_else(|| sqlx::Error::Protocol("a prepared statement vanished".into()))
    }

    /// Runs a statement that returns no rows (or whose rows are ignored); returns the number
    /// of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> sqlx::Result<u64> {
        let stmt = self.statement(sql)?;
        stmt.bind(params)?;
        while stmt.step()? {}
        Ok(stmt.changes())
    }

    /// Runs a query and reads its first row, if any, with `read`.
    pub fn query_row<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        read: impl FnOnce(&Row<'_>) -> T,
    ) -> sqlx::Result<Option<T>> {
        let stmt = self.statement(sql)?;
        stmt.bind(params)?;
        if !stmt.step()? {
            return Ok(None);
        }
        let value = read(&Row(stmt));
        // Finish the statement so it holds no read lock and RETURNING writes complete.
        while stmt.step()? {}
        Ok(Some(value))
    }

    /// Whether the batch's transaction is still open.
    fn in_transaction(&self) -> bool {
        // SAFETY: `db` is the open connection this thread holds for its whole life.
        unsafe { libsqlite3_sys::sqlite3_get_autocommit(self.db) == 0 }
    }

    fn in_savepoint<T, E: From<sqlx::Error>>(
        &mut self,
        work: impl FnOnce(&mut Batch) -> Result<T, E>,
    ) -> Result<T, E> {
        self.execute("SAVEPOINT write", &[])?;
        // A panicking write (its response builder is the product's code) must not take the
        // thread down with it, or every later write would fail until a restart: it is caught,
        // rolled back like any failed write, and answered as an error.
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(self))) {
            Ok(outcome) => outcome,
            Err(_) => {
                Err(sqlx::Error::Protocol("a write panicked and was rolled back".into()).into())
            }
        };
        if outcome.is_err() {
            self.execute("ROLLBACK TO write", &[])?;
        }
        self.execute("RELEASE write", &[])?;
        outcome
    }
}

fn run_thread(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<Job>,
    ready: oneshot::Sender<sqlx::Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(sqlx::Error::Protocol(format!(
                "the SQLite writer's runtime: {e}"
            ))));
            return;
        }
    };
    // The handle stays locked for the thread's life: sqlx's worker thread for this connection
    // is never sent a statement, so nothing else touches it.
    let mut handle = match runtime.block_on(conn.lock_handle()) {
        Ok(handle) => handle,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut batch = Batch {
        db: handle.as_raw_handle().as_ptr(),
        statements: HashMap::new(),
    };
    let _ = ready.send(Ok(()));
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    // Waiting for the first job blocks this thread, which is what it is for.
    while let Some(first) = queue.blocking_recv() {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut batch, &mut jobs);
    }
    drop(batch);
    drop(handle);
    let _ = runtime.block_on(conn.close());
}

fn commit_batch(batch: &mut Batch, jobs: &mut Vec<Job>) {
    if let Err(e) = batch.execute("BEGIN IMMEDIATE", &[]) {
        tracing::error!(error = %e, "the SQLite writer could not begin a batch");
        for job in jobs.drain(..) {
            job(None)(Err(e.to_string()));
        }
        return;
    }
    let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
    let mut lost = false;
    for job in jobs.drain(..) {
        if lost {
            replies.push(job(None));
            continue;
        }
        replies.push(job(Some(batch)));
        // After some errors (a full disk, an I/O error, no memory) SQLite may roll the whole
        // transaction back by itself: then no write of this batch stands, those already run
        // included, and a later SAVEPOINT would silently start a new transaction.
        lost = !batch.in_transaction();
    }
    let committed = if lost {
        tracing::error!("SQLite rolled a write batch back; every write in it is refused");
        Err("the write batch was rolled back by the database".to_owned())
    } else {
        batch.execute("COMMIT", &[]).map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "the SQLite writer could not commit a batch");
            let _ = batch.execute("ROLLBACK", &[]);
            e.to_string()
        })
    };
    for reply in replies {
        reply(committed.clone());
    }
}
