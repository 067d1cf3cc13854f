//! `db::direct`: bulk statements on SQLite's own handle, inside the caller's transaction.

use saaskit::db::direct::{Param, execute_many};
use saaskit::db::{Db, Tx};

use crate::helpers::*;

#[tokio::test]
async fn execute_many_runs_one_statement_per_row_inside_the_transaction() {
    let test_db = TestDb::create(Backend::Sqlite).await;
    let db = test_db.connect().await;
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
