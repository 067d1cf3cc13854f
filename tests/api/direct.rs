//! `db::direct`: bulk statements on SQLite's own handle, inside the caller's transaction.

use saaskit::db::direct::{Param, execute_many};
use saaskit::db::{Db, Tx};

use crate::helpers::*;

#[tokio::test]
async fn execute_many_runs_one_statement_per_row_inside_the_transaction() {
    let test_db = TestDb::create(Backend::Sqlite).await;
    let db = test_db.connect(&products()).await;
    let Db::Sqlite(pool) = &db else {
        panic!("a SQLite database")
    };
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, data BLOB, note TEXT)")
        .execute(pool)
        .await
        .expect("create");

    let mut tx = db.begin().await.expect("begin");
    let Tx::Sqlite(inner) = &mut tx else {
        panic!("a SQLite transaction")
    };
    let names = ["a", "b", "c"];
    let inserted = execute_many(
        &mut *inner,
        "INSERT INTO t (id, name, data, note) VALUES (?, ?, ?, ?)",
        names.iter().enumerate().map(|(i, n)| {
            vec![
                Param::Int(i as i64),
                Param::Text(n),
                Param::Blob(n.as_bytes()),
                Param::Null,
            ]
        }),
    )
    .await
    .expect("insert");
    assert_eq!(inserted, 3);
    let updated = execute_many(
        &mut *inner,
        "UPDATE t SET note = ? WHERE id = ?",
        [0, 2, 7].map(|id| vec![Param::Text("seen"), Param::Int(id)]),
    )
    .await
    .expect("update");
    assert_eq!(updated, 2, "the missing id changes nothing");
    // Errors are errors, and the transaction still belongs to sqlx afterwards.
    let duplicate = execute_many(
        &mut *inner,
        "INSERT INTO t (id) VALUES (?)",
        [vec![Param::Int(0)]],
    )
    .await;
    assert!(duplicate.is_err());
    assert!(
        execute_many(&mut *inner, "NOT SQL", [vec![]])
            .await
            .is_err()
    );
    assert!(
        execute_many(&mut *inner, "SELECT \0", [vec![]])
            .await
            .is_err()
    );
    drop(tx); // rolled back

    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(count, 0, "nothing outlives the rolled-back transaction");

    let mut tx = db.begin().await.expect("begin");
    let Tx::Sqlite(inner) = &mut tx else {
        panic!("a SQLite transaction")
    };
    execute_many(
        &mut *inner,
        "INSERT INTO t (id, name) VALUES (?, ?)",
        [vec![Param::Int(1), Param::Text("kept")]],
    )
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
    let name: String = sqlx::query_scalar("SELECT name FROM t WHERE id = 1")
        .fetch_one(pool)
        .await
        .expect("read");
    assert_eq!(name, "kept");
}

#[tokio::test]
async fn the_writer_commits_a_batch_and_rolls_back_only_the_writes_that_fail() {
    let (_test_db, pool, writer) =
        writer_on("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER)").await;
    let pool = &pool;

    // Many writes at once share batches; every fifth writes a row and then fails.
    let writes = (0..100i64).map(|i| {
        let writer = writer.clone();
        tokio::spawn(async move {
            writer
                .run(move |b| -> Result<i64, sqlx::Error> {
                    // Parameters out of order: `$2` binds the second argument wherever it is.
                    b.execute(
                        "INSERT INTO t (n, id, name) VALUES ($2 * 10, $2, $1)",
                        &[Param::Text("row"), Param::Int(i)],
                    )?;
                    if i % 5 == 0 {
                        return Err(sqlx::Error::Protocol("refused".into()));
                    }
                    let n = b
                        .query_row("SELECT n FROM t WHERE id = $1", &[Param::Int(i)], |r| {
                            r.int(0)
                        })?
                        .expect("the row just written");
                    Ok(n)
                })
                .await
        })
    });
    let results: Vec<_> = futures_join(writes).await;
    for (i, result) in results.into_iter().enumerate() {
        let i = i as i64;
        match result {
            Ok(n) => assert_eq!(n, i * 10),
            Err(e) => {
                assert_eq!(i % 5, 0, "write {i} failed: {e}");
            }
        }
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(
        count, 80,
        "the failed writes left nothing, the others all stand"
    );

    // A statement that cannot run fails its write only.
    let broken = writer.run(|b| b.execute("NOT SQL", &[]).map(|_| ())).await;
    assert!(broken.is_err());
    let after = writer
        .run(|b| b.execute("DELETE FROM t WHERE id = $1", &[Param::Int(1)]))
        .await
        .expect("the writer goes on");
    assert_eq!(after, 1);
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let handles: Vec<_> = handles.collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("the task ran"));
    }
    out
}

#[tokio::test]
async fn a_panicking_write_is_rolled_back_and_the_writer_goes_on() {
    let (_test_db, pool, writer) = writer_on("CREATE TABLE t (id INTEGER PRIMARY KEY)").await;
    let pool = &pool;
    let panicked = writer
        .run(|b| -> Result<(), sqlx::Error> {
            b.execute("INSERT INTO t (id) VALUES (1)", &[])?;
            panic!("a product's response builder failed");
        })
        .await;
    assert!(panicked.is_err());
    let written = writer
        .run(|b| b.execute("INSERT INTO t (id) VALUES (2)", &[]))
        .await
        .expect("the writer still writes");
    assert_eq!(written, 1);
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM t ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("read");
    assert_eq!(ids, [2], "the panicking write left nothing");
}

#[tokio::test]
async fn when_sqlite_rolls_a_batch_back_no_write_of_it_is_reported_done() {
    let (_test_db, pool, writer) = writer_on("CREATE TABLE t (id INTEGER PRIMARY KEY)").await;
    let pool = &pool;
    // Hold the writer thread so that the next writes queue up and share one batch.
    let hold = {
        let writer = writer.clone();
        tokio::spawn(async move {
            writer
                .run(|_| -> Result<(), sqlx::Error> {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    Ok(())
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let writes = (1..=10i64).map(|i| {
        let writer = writer.clone();
        let job = tokio::spawn(async move {
            writer
                .run(move |b| -> Result<(), sqlx::Error> {
                    b.execute("INSERT INTO t (id) VALUES ($1)", &[Param::Int(i)])?;
                    if i == 5 {
                        // What SQLite does by itself after a full disk or an I/O error.
                        b.execute("ROLLBACK", &[])?;
                    }
                    Ok(())
                })
                .await
        });
        (i, job)
    });
    let mut outcomes = Vec::new();
    for (i, job) in writes.collect::<Vec<_>>() {
        outcomes.push((i, job.await.expect("the task ran").is_ok()));
    }
    hold.await
        .expect("the task ran")
        .expect("the holding write");
    let stored: Vec<i64> = sqlx::query_scalar("SELECT id FROM t ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("read");
    // Nothing lost: a write reported done is stored, and one reported failed is not.
    for (i, ok) in &outcomes {
        assert_eq!(
            stored.contains(i),
            *ok,
            "write {i}: reported ok={ok}, stored={stored:?}"
        );
    }
    assert!(
        !outcomes[4].1,
        "the write whose batch was rolled back is refused"
    );
    // The writer goes on.
    writer
        .run(|b| b.execute("INSERT INTO t (id) VALUES (99)", &[]))
        .await
        .expect("the writer still writes");
}

/// A scratch SQLite database with the table `create` makes, and a batching writer on it.
async fn writer_on(create: &str) -> (TestDb, sqlx::SqlitePool, saaskit::db::writer::Writer) {
    let test_db = TestDb::create(Backend::Sqlite).await;
    let Db::Sqlite(pool) = test_db.connect(&products()).await else {
        panic!("a SQLite database")
    };
    sqlx::query(sqlx::AssertSqlSafe(create.to_owned()))
        .execute(&pool)
        .await
        .expect("create");
    let writer = saaskit::db::writer::Writer::start(&pool)
        .await
        .expect("writer");
    (test_db, pool, writer)
}
