//! The operator's command line against a live database: the plan catalogue file
//! (`saaskit plan import`), `renew --dry-run`, and commands that refuse to create a database.

use chrono::Duration;

use crate::cli::saaskit;
use crate::db_test;
use crate::helpers::*;

/// Runs `saaskit` with `args` on the database at `url`: (success, stdout, stderr).
fn run(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = saaskit()
        .args(args)
        .env("SAASKIT_DATABASE_URL", url)
        .output()
        .expect("run saaskit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new empty folder of its own.
fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("saaskit-{name}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("create a scratch folder");
    dir
}

fn example_catalogue() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/plans.example.toml").to_owned()
}

async fn plan(app: &TestApp, code: &str) -> Option<saaskit::store::plans::Plan> {
    let mut tx = app.db.read().await.expect("read");
    saaskit::store::plans::find_by_code(tx.conn(), code)
        .await
        .expect("find plan")
}

async fn audit_entries(app: &TestApp) -> usize {
    let mut tx = app.db.read().await.expect("read");
    let (seq, _) = saaskit::store::audit::head(tx.conn())
        .await
        .expect("the audit log's head");
    seq as usize
}

db_test! {
    async fn plan_import_applies_the_catalogue_once_and_says_what_changed(app) {
        let url = app.test_db.url.clone();
        let (ok, out, err) = run(&url, &["plan", "import", &example_catalogue()]);
        assert!(ok, "{err}");
        for line in ["created free\n", "created pro\n", "created business\n", "updated free-trial:\n", "  fallback: none → free\n"] {
            assert!(out.contains(line), "{line:?} missing from:\n{out}");
        }
        assert!(out.contains("not in the file, left as they are: unlimited"), "{out}");
        let pro = plan(&app, "pro").await.expect("pro created");
        assert_eq!((pro.price_minor, pro.currency.as_str(), pro.cycle_days), (2900, "USD", 30));
        assert_eq!(pro.limits.0.get("applications"), Some(&10));
        let free = plan(&app, "free").await.expect("free created");
        assert_eq!(pro.fallback_plan_id, Some(free.id), "a fallback may name a plan the same file creates");
        assert!(!plan(&app, "business").await.expect("business").limits.0.contains_key("applications"), "unlimited");
        let trial = plan(&app, "free-trial").await.expect("trial");
        assert_eq!(trial.fallback_plan_id, Some(free.id));

        // The same file again changes nothing and records nothing.
        let before = audit_entries(&app).await;
        let (ok, out, err) = run(&url, &["plan", "import", &example_catalogue()]);
        assert!(ok, "{err}");
        for code in ["free-trial", "free", "pro", "business"] {
            assert!(out.contains(&format!("unchanged {code}\n")), "{out}");
        }
        assert!(!out.contains("created") && !out.contains("updated"), "{out}");
        assert_eq!(audit_entries(&app).await, before);

        // An edited file: only what it changes, said field by field; a removed limit is unlimited.
        let dir = scratch_dir("catalogue");
        let edited = dir.join("plans.toml");
        let text = std::fs::read_to_string(example_catalogue()).expect("read catalogue")
            .replace("price = 2900", "price = 3900")
            .replace("limits = { applications = 10, members = 10, recordings = 100000 }", "limits = { members = 10, recordings = 100000 }");
        std::fs::write(&edited, text).expect("write");
        let edited = edited.to_string_lossy().into_owned();
        let (ok, out, err) = run(&url, &["plan", "import", "--dry-run", &edited]);
        assert!(ok, "{err}");
        assert!(out.contains("would update pro:\n  price: 2900 → 3900\n  limits.applications: 10 → unlimited\n"), "{out}");
        assert!(out.contains("dry run: nothing was changed"), "{out}");
        assert_eq!(plan(&app, "pro").await.expect("pro").price_minor, 2900, "a dry run changes nothing");
        assert_eq!(audit_entries(&app).await, before);
        let (ok, out, err) = run(&url, &["plan", "import", "--json", &edited]);
        assert!(ok, "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
        assert_eq!(report["dry_run"], false);
        let pro_outcome = report["plans"].as_array().expect("plans").iter()
            .find(|p| p["code"] == "pro").expect("pro in the report").clone();
        assert_eq!(pro_outcome["outcome"], "updated");
        assert_eq!(pro_outcome["changes"].as_array().map(Vec::len), Some(2));
        let pro = plan(&app, "pro").await.expect("pro");
        assert_eq!(pro.price_minor, 3900);
        assert!(!pro.limits.0.contains_key("applications"));
        assert_eq!(audit_entries(&app).await, before + 1, "one plan.updated entry");

        // A file with a mistake applies nothing, and says where the mistake is.
        let broken = dir.join("broken.toml");
        std::fs::write(&broken, "[[plans]]\ncode = \"team\"\nname = \"Team\"\nprice = 1\ncycle_days = 30\n\n\
            [[plans]]\ncode = \"pro\"\nname = \"Pro\"\nprice = 100\ncycle_days = 30\nfallback = \"nope\"\n").expect("write");
        let (ok, _, err) = run(&url, &["plan", "import", &broken.to_string_lossy()]);
        assert!(!ok);
        assert!(err.contains("nope"), "{err}");
        assert!(plan(&app, "team").await.is_none(), "all or nothing");
        assert_eq!(plan(&app, "pro").await.expect("pro").price_minor, 3900);
        std::fs::write(&broken, "[[plans]]\ncode = \"team\"\nname = \"Team\"\nprice = 1\ncycle_days = 30\nlimit = 3\n").expect("write");
        let (ok, _, err) = run(&url, &["plan", "import", &broken.to_string_lossy()]);
        assert!(!ok);
        assert!(err.contains("broken.toml") && err.contains("limit"), "{err}");
    }
}

db_test! {
    async fn renew_dry_run_prints_what_would_happen_and_changes_nothing(app) {
        let url = app.test_db.url.clone();
        app.signup("ada@example.com").await;
        let (ok, _, err) = run(&url, &["plan", "import", &example_catalogue()]);
        assert!(ok, "{err}");
        let at = (start_time() + Duration::days(16)).to_rfc3339();

        let (ok, out, err) = run(&url, &["renew", "--dry-run", "--at", &at]);
        assert!(ok, "{err}");
        let mut lines = out.lines();
        let report: serde_json::Value =
            serde_json::from_str(lines.next_back().expect("a report")).expect("JSON report");
        assert_eq!(report["dry_run"], true);
        assert_eq!((report["examined"].as_i64(), report["stopped"].as_i64(), report["fell_back"].as_i64()), (Some(1), Some(1), Some(1)));
        let said: Vec<&str> = lines.collect();
        assert_eq!(said.len(), 1, "{out}");
        assert!(said[0].contains("free-trial trialing"), "{out}");
        assert!(said[0].contains("stop as expired at") && said[0].contains("then fall back to free (active)"), "{out}");
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(app.subscription("ada@example.com").await["status"], "trialing", "a dry run changes nothing");

        // Without --dry-run, --at changes the database, and says so.
        let (ok, out, err) = run(&url, &["renew", "--at", &at]);
        assert!(ok, "{err}");
        assert!(err.contains("renew --at changes the database"), "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
        assert_eq!(report["fell_back"], 1);
        let sub = app.subscription("ada@example.com").await;
        assert_eq!((sub["plan"]["code"].as_str(), sub["status"].as_str()), (Some("free"), Some("active")), "{sub}");
    }
}

#[test]
fn commands_other_than_serve_and_migrate_refuse_to_create_a_database() {
    let dir = scratch_dir("no-database");
    let catalogue = example_catalogue();
    for args in [
        vec!["plan", "list"],
        vec!["plan", "import", &catalogue],
        vec!["renew"],
        vec!["renew", "--dry-run"],
        vec!["business", "list"],
        vec!["user", "make-staff", "ada@example.com"],
        vec!["audit", "verify"],
        vec!["secret-key", "reseal"],
        vec!["backup", "copy.db"],
    ] {
        let out = saaskit()
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("run saaskit");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        let expected = dir.join("saaskit.db");
        assert!(
            err.contains(&format!("there is no database at {}", expected.display()))
                && err.contains("SAASKIT_DATABASE_URL")
                && err.contains("saaskit migrate"),
            "{args:?}: {err}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir).expect("list").collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
    // `migrate` creates it; then the same commands work.
    let out = saaskit()
        .arg("migrate")
        .current_dir(&dir)
        .output()
        .expect("migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = saaskit()
        .args(["plan", "list"])
        .current_dir(&dir)
        .output()
        .expect("plan list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("free-trial"));
}
