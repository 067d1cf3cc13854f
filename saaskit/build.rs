//! Rebuild when a migration file is added: `sqlx::migrate!` embeds the folders at compile time, and
//! cargo does not otherwise notice a new file in them (sqlx's documented build script).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
