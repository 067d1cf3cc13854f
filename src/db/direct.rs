//! Bulk statements on SQLite without sqlx's per-statement thread hop.
//!
//! sqlx runs SQLite on a worker thread and every statement is a round trip to it; on a 2-core
//! machine each wake-up costs tens of microseconds, which dwarfs the ~5 µs SQLite needs for a
//! single-row update. [`execute_many`] borrows the connection's handle from that thread once
//! (`lock_handle`, documented for exactly this) and runs one prepared statement for every row
//! of parameters on the calling thread, inside whatever transaction the connection is in.
//!
//! The `unsafe` here is confined to the SQLite C API, used as its documentation requires: the
//! statement is finalized on every path, bound text and blobs are copied by SQLite
//! (`SQLITE_TRANSIENT`), and nothing outlives the lock on the handle.

use std::ffi::{CStr, CString, c_int};
use std::ptr;

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;

/// One bound parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// Finalizes the statement however the function returns.
struct Statement(*mut ffi::sqlite3_stmt);

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful sqlite3_prepare_v2 and is finalized once.
        unsafe {
            ffi::sqlite3_finalize(self.0);
        }
    }
}

fn failure(db: *mut ffi::sqlite3, what: &str, rc: c_int) -> sqlx::Error {
    // SAFETY: sqlite3_errmsg returns a NUL-terminated string owned by the connection, valid
    // until the next call on it; it is copied at once.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned();
    sqlx::Error::Protocol(format!("SQLite {what} failed ({rc}): {message}"))
}

/// Runs `sql` (one statement, `?` parameters) once per row of `rows`, in the connection's
/// current transaction, and returns the total number of rows changed.
pub async fn execute_many<'p>(
    conn: &mut SqliteConnection,
    sql: &str,
    rows: impl IntoIterator<Item = Vec<Param<'p>>>,
) -> sqlx::Result<u64> {
    let sql = CString::new(sql).map_err(|_| sqlx::Error::Protocol("NUL in SQL".into()))?;
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let mut raw: *mut ffi::sqlite3_stmt = ptr::null_mut();
    // SAFETY: `db` is a live connection handle that the worker thread does not touch while
    // `handle` is held; `sql` is NUL-terminated.
    let rc = unsafe { ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut raw, ptr::null_mut()) };
    if rc != ffi::SQLITE_OK || raw.is_null() {
        return Err(failure(db, "prepare", rc));
    }
    let stmt = Statement(raw);
    let mut changed: u64 = 0;
    for row in rows {
        // SAFETY: `stmt.0` is a valid prepared statement of `db`; every pointer passed to a
        // bind call is valid for the call and copied by SQLite (SQLITE_TRANSIENT).
        unsafe {
            ffi::sqlite3_reset(stmt.0);
            ffi::sqlite3_clear_bindings(stmt.0);
            for (i, param) in row.iter().enumerate() {
                let index = c_int::try_from(i + 1)
                    .map_err(|_| sqlx::Error::Protocol("too many parameters".into()))?;
                let rc = match *param {
                    Param::Null => ffi::sqlite3_bind_null(stmt.0, index),
                    Param::Int(v) => ffi::sqlite3_bind_int64(stmt.0, index, v),
                    Param::Text(s) => ffi::sqlite3_bind_text(
                        stmt.0,
                        index,
                        s.as_ptr().cast(),
                        c_int::try_from(s.len())
                            .map_err(|_| sqlx::Error::Protocol("text too long".into()))?,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                    Param::Blob(b) => ffi::sqlite3_bind_blob(
                        stmt.0,
                        index,
                        b.as_ptr().cast(),
                        c_int::try_from(b.len())
                            .map_err(|_| sqlx::Error::Protocol("blob too long".into()))?,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                };
                if rc != ffi::SQLITE_OK {
                    return Err(failure(db, "bind", rc));
                }
            }
            let rc = ffi::sqlite3_step(stmt.0);
            if rc != ffi::SQLITE_DONE {
                return Err(failure(db, "step", rc));
            }
            changed += u64::try_from(ffi::sqlite3_changes64(db)).unwrap_or(0);
        }
    }
    drop(stmt);
    drop(handle);
    Ok(changed)
}
