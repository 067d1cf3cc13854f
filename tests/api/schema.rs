//! The two migration folders must define the same tables, columns, column types and nullability.

use std::collections::BTreeMap;

use saaskit::db::Db;

use crate::helpers::*;

/// A column's portable shape: the type family both databases agree on, and whether it takes NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    family: String,
    nullable: bool,
}

type Columns = BTreeMap<(String, String), Shape>;

/// The family of a PostgreSQL type, as sqlx maps it to Rust and to SQLite's storage.
fn pg_family(data_type: &str) -> String {
    match data_type {
        "uuid" | "bytea" => "bytes",
        "timestamp with time zone" | "bigint" | "integer" | "smallint" => "integer",
        "text" | "jsonb" | "character varying" => "text",
        "boolean" => "boolean",
        other => other,
    }
    .to_owned()
}

/// The family of a SQLite declared type.
fn sqlite_family(declared: &str) -> String {
    match declared.to_ascii_uppercase().as_str() {
        "BLOB" => "bytes",
        "BIGINT" | "INTEGER" => "integer",
        "TEXT" => "text",
        "BOOLEAN" => "boolean",
        other => return format!("sqlite:{other}"),
    }
    .to_owned()
}

async fn columns(db: &Db) -> Columns {
    match db {
        Db::Sqlite(p) => {
            let rows: Vec<(String, String, String, bool, i64)> = sqlx::query_as(
                "SELECT m.name, p.name, p.type, p.\"notnull\", p.pk \
                 FROM sqlite_master m, pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx_%'",
            )
            .fetch_all(p)
            .await
            .expect("list columns");
            rows.into_iter()
                .map(|(table, column, declared, not_null, pk)| {
                    // SQLite lets a non-integer primary key column hold NULL unless it says NOT NULL;
                    // our migrations always mean a key to be non-null, as PostgreSQL enforces.
                    let nullable = !not_null && pk == 0;
                    let shape = Shape {
                        family: sqlite_family(&declared),
                        nullable,
                    };
                    ((table, column), shape)
                })
                .collect()
        }
        Db::Postgres(p) => {
            let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
                 FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx_%'",
            )
            .fetch_all(p)
            .await
            .expect("list columns");
            rows.into_iter()
                .map(|(table, column, data_type, nullable)| {
                    let shape = Shape {
                        family: pg_family(&data_type),
                        nullable: nullable == "YES",
                    };
                    ((table, column), shape)
                })
                .collect()
        }
    }
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_define_the_same_columns_and_types() {
    let sqlite = TestDb::create(Backend::Sqlite).await;
    let sqlite_columns = columns(&sqlite.connect(&products()).await).await;
    let email_key = sqlite_columns.get(&("users".into(), "email_key".into()));
    assert_eq!(email_key.map(|s| s.family.as_str()), Some("text"));
    let unknown: Vec<_> = sqlite_columns
        .iter()
        .filter(|(_, s)| s.family.starts_with("sqlite:"))
        .collect();
    assert!(
        unknown.is_empty(),
        "SQLite columns of a type sqlx does not map portably: {unknown:?}"
    );
    if !postgres_enabled() {
        return;
    }
    let pg = TestDb::create(Backend::Postgres).await;
    let pg_columns = columns(&pg.connect(&products()).await).await;
    let names = |c: &Columns| c.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&sqlite_columns),
        names(&pg_columns),
        "the same tables and columns"
    );
    let differing: Vec<_> = sqlite_columns
        .iter()
        .filter(|(k, s)| pg_columns.get(*k) != Some(*s))
        .map(|(k, s)| (k.clone(), s.clone(), pg_columns.get(k).cloned()))
        .collect();
    assert!(
        differing.is_empty(),
        "columns whose type or nullability differ (SQLite, PostgreSQL): {differing:#?}"
    );
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
    for folder in ["saaskit/migrations", "example/migrations"] {
        let sqlite = names(&format!("{root}/{folder}/sqlite"));
        assert!(!sqlite.is_empty(), "{folder}/sqlite has migrations");
        assert_eq!(
            sqlite,
            names(&format!("{root}/{folder}/postgres")),
            "{folder}"
        );
    }
}
