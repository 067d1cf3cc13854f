//! The README's getting-started walkthrough, run verbatim: the shell block between its
//! `walkthrough: start` and `walkthrough: end` markers goes to `bash -euo pipefail` in a fresh
//! folder laid out like the repository (`plans.example.toml`, and `target/release/saaskit` being
//! the binary under test), against a fresh `saaskit serve` started there, as a newcomer would.
//! It needs `curl` and `jq`; without them it is skipped with a note, unless
//! `SAASKIT_WALKTHROUGH_TESTS=required` (as `.ci/run` sets).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cli::Server;

/// The README's walkthrough block.
fn walkthrough() -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("<!-- walkthrough: start -->")
        .expect("the README marks the walkthrough's start");
    let end = readme
        .find("<!-- walkthrough: end -->")
        .expect("the README marks the walkthrough's end");
    let section = &readme[start..end];
    let body = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.rsplit_once("```"))
        .map(|(body, _)| body)
        .expect("one ```sh block between the markers");
    body.to_owned()
}

fn tools_present() -> bool {
    let required = std::env::var("SAASKIT_WALKTHROUGH_TESTS").is_ok_and(|v| v == "required");
    let missing: Vec<&str> = ["curl", "jq"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| !s.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !required,
        "the walkthrough needs {missing:?} (SAASKIT_WALKTHROUGH_TESTS=required)"
    );
    eprintln!("note: walkthrough skipped, {missing:?} not installed");
    false
}

/// Runs the walkthrough against a fresh server on `database_url` (`None`: the default
/// `sqlite://saaskit.db`, set nowhere, as in the README). Returns what it printed.
async fn run_walkthrough(database_url: Option<&str>) -> Option<String> {
    if !tools_present() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("saaskit-walkthrough-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(dir.join("target/release")).expect("workdir");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_saaskit"),
        dir.join("target/release/saaskit"),
    )
    .expect("link the binary where cargo run --release puts it");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/plans.example.toml"),
        dir.join("plans.example.toml"),
    )
    .expect("copy the catalogue");

    let server = Server::start(database_url.unwrap_or("sqlite://saaskit.db"), &dir).await;
    let mut shell = Command::new("bash");
    shell
        .args(["-euo", "pipefail", "-c", &walkthrough()])
        .current_dir(&dir)
        .env("BASE", &server.base)
        .stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("SAASKIT_") {
            shell.env_remove(key);
        }
    }
    if let Some(url) = database_url {
        shell.env("SAASKIT_DATABASE_URL", url);
    }
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || shell.output()),
    )
    .await
    .expect("the walkthrough finishes within 2 minutes")
    .expect("join")
    .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the README's walkthrough failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert_eq!(server.terminate().await, Some(0));
    let _ = std::fs::remove_dir_all(&dir);
    Some(stdout)
}

/// What the walkthrough shows at each step is what its comments say.
fn check_story(out: &str) {
    for needle in [
        // 1. the catalogue applied, the paid plan listed
        "created pro",
        r#"{"code":"pro","price":2900"#,
        // 2. signed up
        r#"{"email":"ada@example.com","role":"owner","plan":"free-trial"}"#,
        // 3. the invitation accepted
        r#"{"role":"admin"}"#,
        // 4. three applications, then the quota
        r#""name":"android"}"#,
        r#"{"status":402,"code":"quota_exceeded","upgrade_plans":["#,
        // 5. credits and the upgrade paid from them
        "credit balance: 5000",
        r#""amount_due":2900"#,
        r#"{"plan":"pro","status":"active","credit_balance":2100}"#,
        // 6. the SDK's write counted
        r#""meter":"recordings","used":1"#,
        // 7. the audit log
        "subscription.plan_changed",
        "invitation.accepted",
        "api_key.created",
        "audit log intact",
    ] {
        assert!(
            out.contains(needle),
            "the walkthrough's output lacks {needle:?}:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_as_written_sqlite() {
    if let Some(out) = run_walkthrough(None).await {
        check_story(&out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn the_readme_walkthrough_runs_as_written_postgres() {
    let db = saaskit::testing::TestDb::create(saaskit::testing::Backend::Postgres).await;
    if let Some(out) = run_walkthrough(Some(&db.url)).await {
        check_story(&out);
    }
}
