//! The plan catalogue as a file (`saaskit plan import plans.toml`): a version-controlled list of
//! plans applied to the database in one transaction, creating the plans it names that do not
//! exist and bringing the others to exactly what it says. Plans it does not name are left as
//! they are (plans are never deleted; archive one with `archived = true`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::admin::{AdminError, check_terms};
use super::events::Actor;
use crate::app::App;
use crate::audit;
use crate::store::plans::{self, Limits, Plan};

/// A catalogue file: `[[plans]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    #[serde(default)]
    pub plans: Vec<PlanSpec>,
}

/// One plan as the file states it. What the file leaves out takes its default, so a plan in
/// the file is described completely: removing a line resets that field (no fallback, a meter
/// unlimited), never keeps a value the file no longer shows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Per cycle, in minor units (cents).
    pub price: i64,
    #[serde(default = "default_currency")]
    pub currency: String,
    pub cycle_days: i64,
    #[serde(default = "yes")]
    pub renews: bool,
    /// In the public catalog (`GET /api/v1/plans`).
    #[serde(default = "yes")]
    pub public: bool,
    /// The code of the plan a stopped subscription moves to.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Limits per meter; a meter not listed is unlimited.
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub archived: bool,
}

fn default_currency() -> String {
    "USD".to_owned()
}

fn yes() -> bool {
    true
}

/// What the import did (or, in a dry run, would do) to one plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PlanOutcome {
    Created {
        code: String,
    },
    /// `changes`: each field that changed, `field: old → new`.
    Updated {
        code: String,
        changes: Vec<String>,
    },
    Unchanged {
        code: String,
    },
}

/// The whole import's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    pub plans: Vec<PlanOutcome>,
    /// Plans in the database the file does not name, left as they are.
    pub not_in_file: Vec<String>,
    pub dry_run: bool,
}

impl Catalogue {
    /// Parses a catalogue, naming the line of the first mistake.
    pub fn parse(text: &str) -> Result<Catalogue, AdminError> {
        let catalogue: Catalogue =
            toml::from_str(text).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let mut seen = BTreeSet::new();
        for spec in &catalogue.plans {
            let at = |e: AdminError| match e {
                AdminError::Invalid(why) => {
                    AdminError::Invalid(format!("plan {:?}: {why}", spec.code))
                }
                other => other,
            };
            let currency = spec.currency.to_uppercase();
            check_terms(
                &spec.code,
                &currency,
                spec.price,
                spec.cycle_days,
                &spec.limits,
            )
            .map_err(at)?;
            if spec.name.trim().is_empty() {
                return Err(at(AdminError::Invalid("a plan needs a name".into())));
            }
            if spec.fallback.as_deref() == Some(spec.code.as_str()) {
                return Err(at(AdminError::Invalid(
                    "a plan cannot fall back to itself".into(),
                )));
            }
            if !seen.insert(spec.code.as_str()) {
                return Err(at(AdminError::Invalid(
                    "the file names this plan twice".into(),
                )));
            }
        }
        Ok(catalogue)
    }
}

/// Applies `catalogue` in one transaction (all of it or nothing), recording each plan created
/// or changed in the audit log. With `dry_run` nothing is kept; the report is the same.
pub async fn import(
    app: &App,
    catalogue: &Catalogue,
    actor: Actor,
    dry_run: bool,
) -> Result<ImportReport, AdminError> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let existing: Vec<Plan> = plans::all(tx.conn()).await?;
    let mut by_code: HashMap<String, Plan> =
        existing.into_iter().map(|p| (p.code.clone(), p)).collect();

    // New plans first, so a fallback may name a plan the same file creates further down.
    let mut created = BTreeSet::new();
    for spec in &catalogue.plans {
        if by_code.contains_key(&spec.code) {
            continue;
        }
        let plan = Plan {
            id: Uuid::now_v7(),
            code: spec.code.clone(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            price_minor: spec.price,
            currency: spec.currency.to_uppercase(),
            cycle_days: spec.cycle_days,
            renews: spec.renews,
            fallback_plan_id: None,
            limits: sqlx::types::Json(spec.limits.clone()),
            is_public: spec.public,
            archived_at: spec.archived.then_some(now),
            created_at: now,
            updated_at: now,
        };
        plans::insert(tx.conn(), &plan).await?;
        created.insert(spec.code.clone());
        by_code.insert(plan.code.clone(), plan);
    }

    let mut outcomes = Vec::with_capacity(catalogue.plans.len());
    for spec in &catalogue.plans {
        let fallback_plan_id = match &spec.fallback {
            Some(code) => Some(
                by_code
                    .get(code)
                    .ok_or_else(|| AdminError::PlanNotFound(code.clone()))?
                    .id,
            ),
            None => None,
        };
        let Some(current) = by_code.get(&spec.code) else {
            return Err(anyhow::anyhow!("plan {} vanished during the import", spec.code).into());
        };
        let wanted = Plan {
            name: spec.name.clone(),
            description: spec.description.clone(),
            price_minor: spec.price,
            currency: spec.currency.to_uppercase(),
            cycle_days: spec.cycle_days,
            renews: spec.renews,
            fallback_plan_id,
            limits: sqlx::types::Json(spec.limits.clone()),
            is_public: spec.public,
            archived_at: match (spec.archived, current.archived_at) {
                (true, Some(at)) => Some(at),
                (true, None) => Some(now),
                (false, _) => None,
            },
            updated_at: now,
            ..current.clone()
        };
        let fallback_code = |id: Option<Uuid>| match id {
            None => "none".to_owned(),
            Some(id) => by_code
                .values()
                .find(|p| p.id == id)
                .map_or_else(|| id.to_string(), |p| p.code.clone()),
        };
        let changes = differences(current, &wanted, &fallback_code);
        let is_new = created.contains(&spec.code);
        if !changes.is_empty() || is_new {
            plans::update(tx.conn(), &wanted).await?;
        }
        let outcome = if is_new {
            let event = audit::Event::new(audit::Action::PlanCreated, actor.into())
                .target("plan", &wanted.code)
                .details(json!({"price_minor": wanted.price_minor, "currency": wanted.currency, "source": "import"}));
            audit::record(tx.conn(), now, event).await?;
            PlanOutcome::Created {
                code: spec.code.clone(),
            }
        } else if changes.is_empty() {
            PlanOutcome::Unchanged {
                code: spec.code.clone(),
            }
        } else {
            let event = audit::Event::new(audit::Action::PlanUpdated, actor.into())
                .target("plan", &wanted.code)
                .details(json!({
                    "price_minor": wanted.price_minor,
                    "currency": wanted.currency,
                    "archived": wanted.archived_at.is_some(),
                    "source": "import",
                    "changes": changes,
                }));
            audit::record(tx.conn(), now, event).await?;
            PlanOutcome::Updated {
                code: spec.code.clone(),
                changes,
            }
        };
        if let Some(plan) = by_code.get_mut(&spec.code) {
            *plan = wanted;
        }
        outcomes.push(outcome);
    }
    let named: BTreeSet<&str> = catalogue.plans.iter().map(|p| p.code.as_str()).collect();
    let mut not_in_file: Vec<String> = by_code
        .keys()
        .filter(|code| !named.contains(code.as_str()))
        .cloned()
        .collect();
    not_in_file.sort();
    if !dry_run {
        tx.commit().await?;
    }
    Ok(ImportReport {
        plans: outcomes,
        not_in_file,
        dry_run,
    })
}

/// The fields in which `wanted` differs from `current`, said as `field: old → new`.
fn differences(
    current: &Plan,
    wanted: &Plan,
    fallback_code: &dyn Fn(Option<Uuid>) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, old: String, new: String| {
        if old != new {
            out.push(format!("{name}: {old} → {new}"));
        }
    };
    field(
        "name",
        format!("{:?}", current.name),
        format!("{:?}", wanted.name),
    );
    field(
        "description",
        format!("{:?}", current.description),
        format!("{:?}", wanted.description),
    );
    field(
        "price",
        current.price_minor.to_string(),
        wanted.price_minor.to_string(),
    );
    field(
        "currency",
        current.currency.clone(),
        wanted.currency.clone(),
    );
    field(
        "cycle_days",
        current.cycle_days.to_string(),
        wanted.cycle_days.to_string(),
    );
    field(
        "renews",
        current.renews.to_string(),
        wanted.renews.to_string(),
    );
    field(
        "public",
        current.is_public.to_string(),
        wanted.is_public.to_string(),
    );
    field(
        "fallback",
        fallback_code(current.fallback_plan_id),
        fallback_code(wanted.fallback_plan_id),
    );
    field(
        "archived",
        current.archived_at.is_some().to_string(),
        wanted.archived_at.is_some().to_string(),
    );
    let meters: BTreeSet<&String> = current
        .limits
        .0
        .keys()
        .chain(wanted.limits.0.keys())
        .collect();
    let limit = |limits: &BTreeMap<String, i64>, m: &str| {
        limits
            .get(m)
            .map_or_else(|| "unlimited".to_owned(), |v| v.to_string())
    };
    for m in meters {
        field(
            &format!("limits.{m}"),
            limit(&current.limits.0, m),
            limit(&wanted.limits.0, m),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalogue_takes_defaults_and_refuses_mistakes_with_the_plan_named() {
        let ok = Catalogue::parse(
            "[[plans]]\ncode = \"pro\"\nname = \"Pro\"\nprice = 2900\ncycle_days = 30\n\
             limits = { recordings = 10 }\n",
        )
        .expect("parse");
        let pro = &ok.plans[0];
        assert_eq!(pro.currency, "USD");
        assert!(pro.renews && pro.public && !pro.archived);
        assert_eq!(pro.fallback, None);
        assert_eq!(pro.limits.get("recordings"), Some(&10));

        for (text, needle) in [
            (
                "[[plans]]\ncode = \"pro\"\nname = \"Pro\"\nprice = 1\ncycle_days = 30\nprise = 2\n",
                "prise",
            ),
            (
                "[[plans]]\ncode = \"Pro!\"\nname = \"Pro\"\nprice = 1\ncycle_days = 30\n",
                "plan code",
            ),
            (
                "[[plans]]\ncode = \"pro\"\nname = \"Pro\"\nprice = -1\ncycle_days = 30\n",
                "price",
            ),
            (
                "[[plans]]\ncode = \"pro\"\nname = \"Pro\"\nprice = 1\ncycle_days = 0\n",
                "cycle",
            ),
            (
                "[[plans]]\ncode = \"pro\"\nname = \"\"\nprice = 1\ncycle_days = 30\n",
                "name",
            ),
            (
                "[[plans]]\ncode = \"pro\"\nname = \"Pro\"\nprice = 1\ncycle_days = 30\nfallback = \"pro\"\n",
                "itself",
            ),
            (
                "[[plans]]\ncode = \"pro\"\nname = \"Pro\"\nprice = 1\ncycle_days = 30\nlimits = { x = -1 }\n",
                "negative",
            ),
            (
                "[[plans]]\ncode = \"pro\"\nname = \"P\"\nprice = 1\ncycle_days = 3\n[[plans]]\ncode = \"pro\"\nname = \"Q\"\nprice = 1\ncycle_days = 3\n",
                "twice",
            ),
            (
                "[[plans]]\ncode = \"pro\"\nname = \"Pro\"\nprice = 1\ncycle_days = 30\ncurrency = \"dollars\"\n",
                "currency",
            ),
        ] {
            let err = Catalogue::parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
