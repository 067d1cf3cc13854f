//! `saaskit generate resource`, run like a product team would: into a product crate that has
//! only its seed, it writes exactly the files checked in under tests/generated — which the
//! workspace builds and tests on both databases, so the generated code is known to work.

use std::path::{Path, PathBuf};
use std::process::Command;

fn generated() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/generated")
}

const WRITTEN: &[&str] = &[
    "src/lib.rs",
    "src/gadgets.rs",
    "migrations/sqlite/0001_gadgets.sql",
    "migrations/postgres/0001_gadgets.sql",
    "tests/gadgets.rs",
];

fn generate(into: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_saaskit"))
        .args(["generate", "resource"])
        .args(args)
        .arg("--into")
        .arg(into)
        .env("SAASKIT_DATABASE_URL", "sqlite::memory:")
        .output()
        .expect("run saaskit generate")
}

#[test]
fn the_generator_writes_the_checked_in_product_files() {
    let dir = std::env::temp_dir().join(format!(
        "saaskit_generate_{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(dir.join("src")).expect("temp crate");
    std::fs::copy(generated().join("Cargo.toml"), dir.join("Cargo.toml")).expect("manifest");
    std::fs::copy(generated().join("seed/lib.rs"), dir.join("src/lib.rs")).expect("seed");

    let args = [
        "gadgets",
        "name:text",
        "size:int?",
        "shiny:bool?",
        "--gauge",
    ];
    let out = generate(&dir, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in WRITTEN {
        assert!(
            stdout.contains(file),
            "{file} is reported written: {stdout}"
        );
        let got = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = std::fs::read_to_string(generated().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            got, want,
            "{file} differs from tests/generated/{file}: regenerate it"
        );
    }

    // Nothing is overwritten, and mistakes are refused before anything is written.
    let again = generate(&dir, &args);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already"));
    for bad in [
        ["boxes", "id:text"],
        ["boxes", "size:float"],
        ["Boxes", "name:text"],
    ] {
        let refused = generate(&dir, &bad);
        assert!(!refused.status.success(), "{bad:?} is refused");
    }
    assert!(!dir.join("src/boxes.rs").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
