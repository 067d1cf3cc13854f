//! Statements on SQLite without sqlx's per-statement thread hop.
//!
//! sqlx runs SQLite on a worker thread and every statement is a round trip to it; on a 2-core
//! machine each wake-up costs tens of microseconds, which dwarfs the ~5 µs SQLite needs for a
//! single-row write. Two users call SQLite directly instead: [`execute_many`] borrows a
//! connection's handle from its worker thread once (`lock_handle`, documented for exactly this)
//! and runs one statement for many rows; the batching writer ([`super::writer`]) keeps a
//! connection's handle for its own thread.
//!
//! The `unsafe` here is confined to the SQLite C API, used as its documentation requires: a
//! statement is finalized exactly once, bound text and blobs are copied by SQLite
//! (`SQLITE_TRANSIENT`), and a [`Statement`] is only used while its connection's handle is
//! held by the thread using it (it is neither `Send` nor `Sync`).

use std::ffi::{CStr, c_int};
use std::ptr;

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::Timestamp;

/// One bound parameter, stored the way sqlx stores the same Rust value on SQLite.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl<'a> Param<'a> {
    /// A UUID, as sqlx stores it: its 16 bytes.
    pub fn uuid(id: &'a Uuid) -> Param<'a> {
        Param::Blob(id.as_bytes())
    }

    /// A time, as [`Timestamp`] stores it: microseconds since the epoch.
    pub fn time(at: Timestamp) -> Param<'a> {
        Param::Int(at.micros())
    }
}

pub(crate) fn failure(db: *mut ffi::sqlite3, what: &str, rc: c_int) -> sqlx::Error {
    // SAFETY: sqlite3_errmsg returns a NUL-terminated string owned by the connection, valid
    // until the next call on it; it is copied at once.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned();
    sqlx::Error::Protocol(format!("SQLite {what} failed ({rc}): {message}"))
}

/// A prepared statement of one connection, finalized when dropped.
pub(crate) struct Statement {
    raw: *mut ffi::sqlite3_stmt,
    db: *mut ffi::sqlite3,
    /// For each SQL parameter (1-based position - 1), which argument it takes: `$3` and `?3`
    /// take the third, a bare `?` the next one. SQLite numbers `$N` parameters by first
    /// appearance, which is not `N` when they appear out of order.
    slots: Vec<usize>,
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: `raw` came from a successful sqlite3_prepare_v2 and is finalized once.
        unsafe {
            ffi::sqlite3_finalize(self.raw);
        }
    }
}

impl Statement {
    /// Prepares `sql` (one statement) on `db`.
    ///
    /// # Safety
    /// `db` must be a live connection that only the calling thread uses until the statement
    /// is dropped.
    pub(crate) unsafe fn prepare(db: *mut ffi::sqlite3, sql: &str) -> sqlx::Result<Statement> {
        let len = c_int::try_from(sql.len())
            .map_err(|_| sqlx::Error::Protocol("SQL text too long".into()))?;
        let mut raw: *mut ffi::sqlite3_stmt = ptr::null_mut();
        // SAFETY: `db` is live (caller's promise); `sql` is valid for `len` bytes.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(db, sql.as_ptr().cast(), len, &mut raw, ptr::null_mut())
        };
        if rc != ffi::SQLITE_OK || raw.is_null() {
            return Err(failure(db, "prepare", rc));
        }
        let mut stmt = Statement {
            raw,
            db,
            slots: Vec::new(),
        };
        // SAFETY: `raw` is a valid statement; parameter names are NUL-terminated strings owned
        // by it, read at once.
        let count = unsafe { ffi::sqlite3_bind_parameter_count(raw) };
        for i in 1..=count {
            let name = unsafe { ffi::sqlite3_bind_parameter_name(raw, i) };
            let numbered = (!name.is_null())
                .then(|| unsafe { CStr::from_ptr(name) }.to_str().ok())
                .flatten()
                .and_then(|n| n.get(1..))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n >= 1);
            let position = usize::try_from(i - 1).unwrap_or(0);
            stmt.slots.push(numbered.map_or(position, |n| n - 1));
        }
        Ok(stmt)
    }

    /// Resets the statement and binds `params` to it.
    pub(crate) fn bind(&mut self, params: &[Param<'_>]) -> sqlx::Result<()> {
        // SAFETY: `self.raw` is a valid statement of `self.db`, used on its thread; every
        // pointer passed to a bind call is valid for the call and copied (SQLITE_TRANSIENT).
        unsafe {
            ffi::sqlite3_reset(self.raw);
            ffi::sqlite3_clear_bindings(self.raw);
            for (i, &slot) in self.slots.iter().enumerate() {
                let index = c_int::try_from(i + 1)
                    .map_err(|_| sqlx::Error::Protocol("too many parameters".into()))?;
                let param = params.get(slot).ok_or_else(|| {
                    sqlx::Error::Protocol(format!("no argument for SQL parameter {}", slot + 1))
                })?;
                let rc = match *param {
                    Param::Null => ffi::sqlite3_bind_null(self.raw, index),
                    Param::Int(v) => ffi::sqlite3_bind_int64(self.raw, index, v),
                    Param::Text(s) => ffi::sqlite3_bind_text(
                        self.raw,
                        index,
                        s.as_ptr().cast(),
                        c_int::try_from(s.len())
                            .map_err(|_| sqlx::Error::Protocol("text too long".into()))?,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                    Param::Blob(b) => ffi::sqlite3_bind_blob(
                        self.raw,
                        index,
                        b.as_ptr().cast(),
                        c_int::try_from(b.len())
                            .map_err(|_| sqlx::Error::Protocol("blob too long".into()))?,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                };
                if rc != ffi::SQLITE_OK {
                    return Err(failure(self.db, "bind", rc));
                }
            }
        }
        Ok(())
    }

    /// Runs the statement one step: `true` when a row is ready to read, `false` when done.
    pub(crate) fn step(&mut self) -> sqlx::Result<bool> {
        // SAFETY: a valid statement of `self.db`, used on its thread.
        match unsafe { ffi::sqlite3_step(self.raw) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            rc => Err(failure(self.db, "step", rc)),
        }
    }

    /// Rows changed by the last completed statement of the connection.
    pub(crate) fn changes(&self) -> u64 {
        // SAFETY: a live connection, used on its thread.
        u64::try_from(unsafe { ffi::sqlite3_changes64(self.db) }).unwrap_or(0)
    }

    /// The current row's column `i` as an integer (0 for NULL).
    pub(crate) fn int(&self, i: c_int) -> i64 {
        // SAFETY: called after `step` returned a row; SQLite checks the index.
        unsafe { ffi::sqlite3_column_int64(self.raw, i) }
    }

    /// The current row's column `i` as bytes (text or blob), copied.
    pub(crate) fn bytes(&self, i: c_int) -> Vec<u8> {
        // SAFETY: as for `int`; the pointer is valid for `len` bytes until the next step,
        // and is copied at once (sqlite3_column_bytes is called after sqlite3_column_blob, as
        // SQLite's documentation asks).
        unsafe {
            let data = ffi::sqlite3_column_blob(self.raw, i);
            let len = usize::try_from(ffi::sqlite3_column_bytes(self.raw, i)).unwrap_or(0);
            if data.is_null() || len == 0 {
                return Vec::new();
            }
            std::slice::from_raw_parts(data.cast::<u8>(), len).to_vec()
        }
    }

    /// The current row's column `i` as text (invalid UTF-8 replaced).
    pub(crate) fn text(&self, i: c_int) -> String {
        String::from_utf8(self.bytes(i))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// Runs `sql` (one statement, `$N` or `?` parameters) once per row of `rows`, in the
/// connection's current transaction, and returns the total number of rows changed.
pub async fn execute_many<'p>(
    conn: &mut SqliteConnection,
    sql: &str,
    rows: impl IntoIterator<Item = Vec<Param<'p>>>,
) -> sqlx::Result<u64> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: the worker thread does not touch `db` while `handle` is held, and the statement
    // is dropped before the handle.
    let mut stmt = unsafe { Statement::prepare(db, sql)? };
    let mut changed: u64 = 0;
    for row in rows {
        stmt.bind(&row)?;
        while stmt.step()? {}
        changed += stmt.changes();
    }
    drop(stmt);
    drop(handle);
    Ok(changed)
}
