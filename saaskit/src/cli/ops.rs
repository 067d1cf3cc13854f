//! The operator commands (`saaskit plan|business|user …`): thin wrappers over the admin
//! services, printing for people or, with `--json`, for scripts.

use crate::app::App;
use crate::billing::admin::{self, NewPlan, PlanUpdate};
use crate::billing::events::Actor;
use crate::store::businesses::BusinessSummary;
use crate::store::plans::Plan;
use anyhow::Context as _;
use serde_json::json;

use super::{BusinessCommand, PlanCommand, SecretKeyCommand, UserCommand};

fn plan_line(p: &Plan, code_of: &dyn Fn(Option<uuid::Uuid>) -> Option<String>) -> String {
    let limits = if p.limits.0.is_empty() {
        "unlimited".to_owned()
    } else {
        p.limits
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "{:<16} {:>10} {} every {} days  {}{}{}{}  limits: {}",
        p.code,
        p.price_minor,
        p.currency,
        p.cycle_days,
        if p.is_public { "public" } else { "hidden" },
        if p.renews {
            ", renews"
        } else {
            ", does not renew"
        },
        code_of(p.fallback_plan_id)
            .map(|c| format!(", falls back to {c}"))
            .unwrap_or_default(),
        if p.archived_at.is_some() {
            ", ARCHIVED"
        } else {
            ""
        },
        limits
    )
}

pub(super) async fn plan(app: &App, cmd: PlanCommand) -> anyhow::Result<()> {
    match cmd {
        PlanCommand::List => {
            let mut tx = app.db.read().await?;
            let all = crate::store::plans::all(tx.conn()).await?;
            let code_of = |id: Option<uuid::Uuid>| {
                id.and_then(|id| all.iter().find(|p| p.id == id))
                    .map(|p| p.code.clone())
            };
            for p in &all {
                println!("{}", plan_line(p, &code_of));
            }
        }
        PlanCommand::Create {
            code,
            name,
            description,
            price,
            currency,
            days,
            limits,
            hidden,
            no_renew,
            fallback,
        } => {
            let plan = admin::create_plan(
                app,
                NewPlan {
                    code,
                    name,
                    description,
                    price_minor: price,
                    currency,
                    cycle_days: days,
                    renews: !no_renew,
                    fallback_code: fallback,
                    limits: limits.into_iter().collect(),
                    is_public: !hidden,
                },
                Actor::Admin(None),
            )
            .await?;
            println!("created plan {}", plan.code);
        }
        PlanCommand::Update {
            code,
            name,
            description,
            price,
            currency,
            days,
            limits,
            unlimit,
            hidden,
            public,
            no_renew,
            renew,
            fallback,
            no_fallback,
        } => {
            let mut changes: Vec<(String, Option<i64>)> =
                limits.into_iter().map(|(k, v)| (k, Some(v))).collect();
            changes.extend(unlimit.into_iter().map(|k| (k, None)));
            let plan = admin::update_plan(
                app,
                &code,
                PlanUpdate {
                    name,
                    description,
                    price_minor: price,
                    currency,
                    cycle_days: days,
                    renews: (renew || no_renew).then_some(renew),
                    fallback_code: if no_fallback {
                        Some(None)
                    } else {
                        fallback.map(Some)
                    },
                    limits: changes,
                    is_public: (public || hidden).then_some(public),
                    archived: None,
                },
                Actor::Admin(None),
            )
            .await?;
            println!("updated plan {}", plan.code);
        }
        PlanCommand::Archive { code } => {
            admin::archive_plan(app, &code, Actor::Admin(None)).await?;
            println!("archived plan {code}");
        }
        PlanCommand::Import {
            file,
            dry_run,
            json,
        } => {
            use crate::billing::catalogue::{self, Catalogue, PlanOutcome};
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let parsed =
                Catalogue::parse(&text).with_context(|| format!("in {}", file.display()))?;
            let report = catalogue::import(app, &parsed, Actor::Admin(None), dry_run).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            let verb = |done: &'static str, would: &'static str| if dry_run { would } else { done };
            for outcome in &report.plans {
                match outcome {
                    PlanOutcome::Created { code } => {
                        println!("{} {code}", verb("created", "would create"));
                    }
                    PlanOutcome::Updated { code, changes } => {
                        println!("{} {code}:", verb("updated", "would update"));
                        for change in changes {
                            println!("  {change}");
                        }
                    }
                    PlanOutcome::Unchanged { code } => println!("unchanged {code}"),
                }
            }
            if !report.not_in_file.is_empty() {
                println!(
                    "not in the file, left as they are: {}",
                    report.not_in_file.join(", ")
                );
            }
            if dry_run {
                println!("dry run: nothing was changed");
            }
        }
    }
    Ok(())
}

fn summary_json(b: &BusinessSummary) -> serde_json::Value {
    json!({
        "id": b.id,
        "name": b.name,
        "active": b.is_active,
        "created_at": b.created_at,
        "plan": b.plan,
        "status": b.status,
        "current_period_start": b.current_period_start,
        "current_period_end": b.current_period_end,
        "credit_balance": b.credit_balance,
    })
}

fn summary_text(b: &BusinessSummary) -> String {
    let or_dash = |t: Option<crate::db::Timestamp>| t.map(|t| t.to_rfc3339()).unwrap_or("-".into());
    format!(
        "id:             {}\nname:           {}\nactive:         {}\nplan:           {}\nstatus:         {}\nperiod:         {} → {}\ncredit balance: {}",
        b.id,
        b.name,
        b.is_active,
        b.plan.as_deref().unwrap_or("-"),
        b.status.as_deref().unwrap_or("-"),
        or_dash(b.current_period_start),
        or_dash(b.current_period_end),
        b.credit_balance
    )
}

pub(super) async fn business(app: &App, cmd: BusinessCommand) -> anyhow::Result<()> {
    match cmd {
        BusinessCommand::List { json } => {
            let mut after = uuid::Uuid::nil();
            loop {
                let page = {
                    let mut tx = app.db.read().await?;
                    crate::store::businesses::list_summaries(tx.conn(), after, 500).await?
                };
                let Some(last) = page.last() else { break };
                after = last.id;
                for b in &page {
                    if json {
                        println!("{}", summary_json(b));
                    } else {
                        println!(
                            "{}  {:<12} {:<9} credits {:>8}  {}",
                            b.id,
                            b.plan.as_deref().unwrap_or("-"),
                            b.status.as_deref().unwrap_or("-"),
                            b.credit_balance,
                            b.name
                        );
                    }
                }
            }
        }
        BusinessCommand::Show { id, json } => {
            let b = admin::business_summary(app, id).await?;
            let (account, last) = {
                let mut tx = app.db.read().await?;
                (
                    crate::store::payments::account(tx.conn(), id).await?,
                    crate::store::payments::last(tx.conn(), id).await?,
                )
            };
            let card = account.as_ref().and_then(|a| {
                Some(json!({
                    "id": a.payment_method_id.as_ref()?,
                    "brand": a.card_brand, "last4": a.card_last4,
                    "exp_month": a.card_exp_month, "exp_year": a.card_exp_year,
                }))
            });
            let last_payment = last.as_ref().map(|p| {
                json!({
                    "id": p.id, "purpose": p.purpose, "amount": p.amount, "currency": p.currency,
                    "status": p.status, "provider_payment_id": p.provider_payment_id,
                    "decline_code": p.decline_code, "created_at": p.created_at,
                })
            });
            let flagged = account.as_ref().and_then(|a| a.flag_reason.clone());
            if json {
                let mut doc = summary_json(&b);
                doc["payment_method"] = card.unwrap_or(serde_json::Value::Null);
                doc["last_payment"] = last_payment.unwrap_or(serde_json::Value::Null);
                doc["flagged"] = flagged.map_or(serde_json::Value::Null, serde_json::Value::from);
                println!("{doc}");
            } else {
                println!("{}", summary_text(&b));
                let card = account
                    .as_ref()
                    .and_then(|a| {
                        Some(format!(
                            "{} ending {} (expires {:02}/{})",
                            a.card_brand.as_deref()?,
                            a.card_last4.as_deref()?,
                            a.card_exp_month.unwrap_or(0),
                            a.card_exp_year.unwrap_or(0)
                        ))
                    })
                    .unwrap_or_else(|| "-".into());
                println!("payment method: {card}");
                let last = last
                    .map(|p| {
                        format!(
                            "{} {} {} ({}{}) {}",
                            p.purpose,
                            crate::web::format::money(p.amount, &p.currency),
                            p.status,
                            p.provider_payment_id.as_deref().unwrap_or("-"),
                            p.decline_code.map(|c| format!(", {c}")).unwrap_or_default(),
                            p.created_at.to_rfc3339()
                        )
                    })
                    .unwrap_or_else(|| "-".into());
                println!("last payment:   {last}");
                if let Some(reason) = flagged {
                    println!("flagged:        {reason}");
                }
            }
        }
        BusinessCommand::SetPlan { id, plan } => {
            let sub = admin::set_plan(app, id, &plan, Actor::Admin(None)).await?;
            println!(
                "business {id} is on {plan} until {}",
                sub.current_period_end.to_rfc3339()
            );
        }
        BusinessCommand::GrantCredits { id, amount, note } => {
            let balance = admin::grant_credits(app, id, amount, note, Actor::Admin(None)).await?;
            println!("business {id} credit balance: {balance}");
        }
    }
    Ok(())
}

pub(super) async fn user(app: &App, cmd: UserCommand) -> anyhow::Result<()> {
    let (email, staff) = match cmd {
        UserCommand::MakeStaff { email } => (email, true),
        UserCommand::RemoveStaff { email } => (email, false),
        UserCommand::ResetMfa { email } => {
            let was_on = crate::accounts::mfa::reset(app, &email, None)
                .await
                .with_context(|| format!("resetting the two-factor sign-in of {email}"))?;
            println!(
                "{email} {}",
                if was_on {
                    "signs in with a password alone now (two-factor sign-in turned off)"
                } else {
                    "had no two-factor sign-in: nothing changed"
                }
            );
            return Ok(());
        }
    };
    admin::set_staff(app, &email, staff)
        .await
        .with_context(|| format!("updating {email}"))?;
    println!(
        "{email} {} staff",
        if staff { "is now" } else { "is no longer" }
    );
    Ok(())
}

/// `saaskit check-ready`: one plain HTTP/1.1 request to `/readyz` on the server's own address.
pub(super) async fn check_ready(bind: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // A server bound to every interface is reached on loopback.
    let addr = if bind.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], bind.port()))
    } else {
        bind
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{addr} did not answer within 5 s"))??;
    let status_line = answer.lines().next().unwrap_or_default().to_owned();
    if status_line.split_whitespace().nth(1) == Some("200") {
        println!("ready");
        Ok(())
    } else {
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        anyhow::bail!("not ready: {status_line} {body}")
    }
}

/// `saaskit secret-key …`: generate, rotate and re-seal (see `crate::seal`).
pub(super) async fn secret_key(
    config: crate::config::Config,
    cmd: SecretKeyCommand,
    products: std::sync::Arc<crate::product::Products>,
) -> anyhow::Result<()> {
    use crate::seal::{self, KeySource, Sealer, SecretKey};
    match cmd {
        SecretKeyCommand::Generate => {
            println!("{}", SecretKey::generate().encode());
            Ok(())
        }
        SecretKeyCommand::Rotate => {
            let KeySource::File(path) = Sealer::from_config(&config)?.source().clone() else {
                anyhow::bail!(
                    "the key comes from SAASKIT_SECRET_KEY: set it to a new key (`saaskit \
                     secret-key generate`), move the old one to SAASKIT_SECRET_KEY_OLD, restart \
                     every server, then run `saaskit secret-key reseal`"
                );
            };
            let mut keys = seal::load_or_create_key_file(&path)?;
            let new = SecretKey::generate();
            keys.insert(0, new.clone());
            seal::write_key_file(&path, &keys)?;
            println!(
                "new key {} is current in {}; {} older key(s) kept for reading",
                new.id(),
                path.display(),
                keys.len() - 1
            );
            let app = App::connect(config, products.clone()).await?;
            let result = reseal_everything(&app).await;
            app.db.close().await;
            result?;
            println!(
                "restart every running server so it seals with the new key; once they all \
                 have, `saaskit secret-key reseal --prune` drops the older keys"
            );
            Ok(())
        }
        SecretKeyCommand::Reseal { prune } => {
            let app = App::connect(config, products.clone()).await?;
            let result = async {
                reseal_everything(&app).await?;
                if !prune {
                    return Ok(());
                }
                let KeySource::File(path) = app.sealer.source() else {
                    anyhow::bail!(
                        "--prune edits the key file; with SAASKIT_SECRET_KEY, remove \
                         SAASKIT_SECRET_KEY_OLD yourself"
                    );
                };
                let left = crate::mail::unsealed_or_old(&app.db, &app.sealer).await?
                    + crate::webhooks::unsealed_or_old(&app.db, &app.sealer).await?;
                if left > 0 {
                    anyhow::bail!(
                        "{left} value(s) are still under an older key (a server still running \
                         with it?); nothing pruned"
                    );
                }
                let keys = seal::load_or_create_key_file(path)?;
                if let Some(current) = keys.first() {
                    seal::write_key_file(path, std::slice::from_ref(current))?;
                    println!(
                        "{} older key(s) dropped from {}",
                        keys.len() - 1,
                        path.display()
                    );
                }
                Ok(())
            }
            .await;
            app.db.close().await;
            result
        }
    }
}

/// Re-seals every sealed column under the current key. One list of them, here.
async fn reseal_everything(app: &App) -> anyhow::Result<()> {
    let mail = crate::mail::reseal_outbox(&app.db, &app.sealer).await?;
    println!(
        "re-sealed {mail} outbox message(s) under key {}",
        app.sealer.current_id()
    );
    let endpoints = crate::webhooks::reseal_secrets(&app.db, &app.sealer).await?;
    println!(
        "re-sealed {endpoints} webhook endpoint secret(s) under key {}",
        app.sealer.current_id()
    );
    let seeds = crate::accounts::mfa::reseal_secrets(&app.db, &app.sealer).await?;
    println!(
        "re-sealed {seeds} two-factor seed(s) under key {}",
        app.sealer.current_id()
    );
    Ok(())
}
