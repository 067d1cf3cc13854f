//! Marks the build when `SAASKIT_TEST_POSTGRES_URL` is set, so that the PostgreSQL variants of
//! the tests run then and are reported as ignored otherwise (not as passed without running).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(saaskit_postgres_tests)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=SAASKIT_TEST_POSTGRES_URL");
    if std::env::var("SAASKIT_TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=saaskit_postgres_tests");
    }
}
