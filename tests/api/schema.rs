//! The two migration folders must define the same tables and columns.

use std::collections::BTreeSet;

use saaskit::db::Db;

use crate::helpers::*;

async fn columns(db: &Db) -> BTreeSet<(String, String)> {
    let rows: Vec<(String, String)> = match db {
        Db::Sqlite(p) => {
            sqlx::query_as(
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx_%'",
            )
            .fetch_all(p)
            .await
        }
        Db::Postgres(p) => {
            sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx_%'",
            )
            .fetch_all(p)
            .await
        }
    }
    .expect("list columns");
    rows.into_iter().collect()
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_define_the_same_columns() {
    let sqlite = TestDb::create(Backend::Sqlite).await;
    let sqlite_columns = columns(&sqlite.connect().await).await;
    assert!(sqlite_columns.contains(&("users".into(), "email_key".into())));
    if !postgres_enabled() {
        return;
    }
    let pg = TestDb::create(Backend::Postgres).await;
    let pg_columns = columns(&pg.connect().await).await;
    assert_eq!(sqlite_columns, pg_columns);
}

#[test]
fn both_migration_folders_have_the_same_versions() {
    let names = |dir: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations folder")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let sqlite = names(&format!("{root}/migrations/sqlite"));
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, names(&format!("{root}/migrations/postgres")));
}
