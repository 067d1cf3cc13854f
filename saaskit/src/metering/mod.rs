//! Metering: the plan's limits enforced. Two kinds of meter: per-cycle counters (`recordings`:
//! start again at zero every billing cycle, the old cycles kept as history) and gauges
//! (`applications`, `members`: how many exist now, going down when one is deleted). One call
//! checks and consumes atomically ([`consume`]); a limit is never exceeded, whatever the
//! concurrency. Metered POSTs are made retry-safe by [`idempotency`].

pub mod idempotency;
mod insert;

pub use insert::{MeteredError, MeteredInsert, Value, insert_metered};

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use thiserror::Error;
use uuid::Uuid;

use crate::accounts::{CurrentSubscription, Principal};
use crate::db::{Conn, Timestamp, Tx};
use crate::store::usage::{self, UNLIMITED};
use crate::store::{plans, subscriptions};

/// The most one call may consume, so counters can never overflow.
pub const MAX_QUANTITY: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeterKind {
    /// Counts use within a billing cycle; a new cycle starts at zero.
    PerCycle,
    /// Counts what exists now; goes down when a thing is deleted.
    Gauge,
}

/// A meter: its name and its kind. A product declares its own as constants
/// (`pub const APPLICATIONS: Meter = Meter::gauge("applications")`) and registers them with its
/// [`crate::product::Product`]; the functions below take one, so the kind always travels with
/// the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter<'a> {
    name: &'a str,
    kind: MeterKind,
}

impl<'a> Meter<'a> {
    /// A meter that counts what exists now (applications, members).
    pub const fn gauge(name: &'a str) -> Meter<'a> {
        Meter {
            name,
            kind: MeterKind::Gauge,
        }
    }

    /// A meter that counts use within a billing cycle (recordings, API calls).
    pub const fn per_cycle(name: &'a str) -> Meter<'a> {
        Meter {
            name,
            kind: MeterKind::PerCycle,
        }
    }

    pub const fn name(&self) -> &'a str {
        self.name
    }

    pub const fn kind(&self) -> MeterKind {
        self.kind
    }
}

/// saaskit's own gauge: the active people and bots of a business.
pub const MEMBERS: Meter<'static> = Meter::gauge("members");

/// The meters a deployment knows: saaskit's and those its products declared. A meter nobody
/// declared counts per cycle (`POST /api/v1/usage` may name any meter a plan limits).
#[derive(Debug, Clone)]
pub struct Meters {
    declared: BTreeMap<String, MeterKind>,
}

impl Default for Meters {
    fn default() -> Self {
        Meters {
            declared: BTreeMap::from([(MEMBERS.name.to_owned(), MEMBERS.kind)]),
        }
    }
}

impl Meters {
    /// Declares a meter; declaring one again with the same kind changes nothing.
    pub fn declare(&mut self, name: &str, kind: MeterKind) -> anyhow::Result<()> {
        match self.declared.get(name) {
            Some(known) if *known != kind => {
                anyhow::bail!("meter {name} is declared both as {known:?} and as {kind:?}")
            }
            _ => {
                self.declared.insert(name.to_owned(), kind);
                Ok(())
            }
        }
    }

    /// The meter called `name`, with its declared kind (per cycle when undeclared).
    pub fn get<'a>(&self, name: &'a str) -> Meter<'a> {
        Meter {
            name,
            kind: self
                .declared
                .get(name)
                .copied()
                .unwrap_or(MeterKind::PerCycle),
        }
    }
}

/// Meter names are short lowercase identifiers (`recordings`, `api_calls`).
pub fn is_meter_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// What a successful consume left.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Consumed {
    pub meter: String,
    pub used: i64,
    /// `None`: the plan does not limit this meter.
    #[schema(required = true)]
    pub limit: Option<i64>,
    #[schema(required = true)]
    pub remaining: Option<i64>,
    /// When a per-cycle meter starts again at zero; `None` for gauges.
    #[schema(required = true)]
    pub resets_at: Option<Timestamp>,
}

#[derive(Debug, Error)]
pub enum QuotaError {
    #[error("the business has no live subscription")]
    NoActiveSubscription {
        /// The current subscription's status, if there is one (`expired`, `canceled`, …).
        status: Option<String>,
    },
    #[error("the {} limit of {} is reached", .0.meter, .0.limit)]
    Exceeded(Box<Exceeded>),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for QuotaError {
    fn from(err: sqlx::Error) -> Self {
        QuotaError::Unexpected(err.into())
    }
}

/// A refusal that explains itself: which limit, how much is used, when it resets, and which
/// public plans would allow the request.
#[derive(Debug, Clone, Serialize)]
pub struct Exceeded {
    pub meter: String,
    pub kind: MeterKind,
    pub limit: i64,
    pub used: i64,
    pub requested: i64,
    pub resets_at: Option<Timestamp>,
    pub plan: String,
    pub upgrade_plans: Vec<String>,
}

/// The live subscription whose limits apply, or why there is none.
pub fn live_subscription(
    principal: &Principal,
    now: Timestamp,
) -> Result<&CurrentSubscription, QuotaError> {
    match &principal.subscription {
        Some(sub) if sub.is_live(now) => Ok(sub),
        other => Err(QuotaError::NoActiveSubscription {
            status: other.as_ref().map(|s| s.status.clone()),
        }),
    }
}

/// Checks and consumes `quantity` of `meter` for the caller's business, inside `tx`: commit
/// `tx` with the thing being metered, or drop it and nothing was consumed. Refuses with
/// [`QuotaError::Exceeded`] when the plan's limit would be passed, and with
/// [`QuotaError::NoActiveSubscription`] when the business has no live subscription.
pub async fn consume(
    tx: &mut Tx,
    principal: &Principal,
    meter: Meter<'_>,
    quantity: i64,
    now: Timestamp,
) -> Result<Consumed, QuotaError> {
    consume_for(
        tx,
        principal.business_id,
        principal.subscription.as_ref(),
        meter,
        quantity,
        now,
    )
    .await
}

/// [`consume`] for a business named by id, with its subscription as [`current_subscription`]
/// found it: for work done on a business's behalf without its token (accepting an invitation).
pub async fn consume_for(
    tx: &mut Tx,
    business: Uuid,
    subscription: Option<&CurrentSubscription>,
    meter: Meter<'_>,
    quantity: i64,
    now: Timestamp,
) -> Result<Consumed, QuotaError> {
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(anyhow::anyhow!("quantity {quantity} out of range").into());
    }
    let sub = match subscription {
        Some(sub) if sub.is_live(now) => sub,
        other => {
            return Err(QuotaError::NoActiveSubscription {
                status: other.map(|s| s.status.clone()),
            });
        }
    };
    let limit = sub.limits.get(meter.name).copied();
    let kind = meter.kind;
    let name = meter.name;
    let used = match kind {
        MeterKind::PerCycle => {
            usage::add_to_counter(
                tx.conn(),
                business,
                name,
                sub.current_period_start,
                sub.current_period_end,
                quantity,
                limit.unwrap_or(UNLIMITED),
                now,
            )
            .await?
        }
        MeterKind::Gauge => {
            usage::add_to_gauge(
                tx.conn(),
                business,
                name,
                quantity,
                limit.unwrap_or(UNLIMITED),
            )
            .await?
        }
    };
    let resets_at = (kind == MeterKind::PerCycle).then_some(sub.current_period_end);
    if let (Some(used), Some(limit)) = (used, limit)
        && crate::webhooks::crosses_threshold(used - quantity, used, limit)
    {
        crate::webhooks::quota_thresholds(
            tx.conn(),
            now,
            business,
            name,
            sub.current_period_start,
            (used - quantity, used, limit),
        )
        .await?;
    }
    match (used, limit) {
        (Some(used), limit) => Ok(Consumed {
            meter: name.to_owned(),
            used,
            limit,
            remaining: limit.map(|l| (l - used).max(0)),
            resets_at,
        }),
        (None, Some(limit)) => {
            Err(refusal(tx.conn(), business, sub, meter, limit, quantity).await?)
        }
        (None, None) => Err(anyhow::anyhow!("unlimited meter {name} refused an increment").into()),
    }
}

/// A business's current subscription with its plan's limits, read inside `c`'s transaction.
pub async fn current_subscription(
    c: Conn<'_>,
    business_id: Uuid,
) -> anyhow::Result<Option<CurrentSubscription>> {
    let mut c = c;
    let Some(sub) = subscriptions::current_of(c.reborrow(), business_id).await? else {
        return Ok(None);
    };
    let plan = plans::find(c.reborrow(), sub.plan_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription {} has no plan", sub.id))?;
    Ok(Some(CurrentSubscription {
        id: sub.id,
        status: sub.status,
        current_period_start: sub.current_period_start,
        current_period_end: sub.current_period_end,
        plan_id: plan.id,
        plan_code: plan.code,
        limits: plan.limits.0,
    }))
}

/// Gives back `quantity` of a gauge, in the transaction that deletes what it counted.
pub async fn release(
    tx: &mut Tx,
    business_id: Uuid,
    meter: Meter<'_>,
    quantity: i64,
) -> Result<(), sqlx::Error> {
    debug_assert_eq!(meter.kind, MeterKind::Gauge, "only gauges are released");
    usage::subtract_from_gauge(tx.conn(), business_id, meter.name, quantity).await
}

/// Adds to a gauge without checking the limit: for what must exist whatever the plan (the
/// owner who signs up is the business's first member).
pub async fn record_unchecked(
    tx: &mut Tx,
    business_id: Uuid,
    meter: Meter<'_>,
    quantity: i64,
) -> Result<(), sqlx::Error> {
    debug_assert_eq!(
        meter.kind,
        MeterKind::Gauge,
        "only gauges are recorded unchecked"
    );
    usage::add_to_gauge(tx.conn(), business_id, meter.name, quantity, UNLIMITED)
        .await
        .map(|_| ())
}

/// Refuses (without consuming anything) when `quantity` more of a gauge, on top of what it counts
/// and `reserved` more held elsewhere (pending invitations for `members`), would pass the plan's
/// limit.
pub async fn ensure_room(
    mut c: Conn<'_>,
    business: Uuid,
    sub: &CurrentSubscription,
    meter: Meter<'_>,
    reserved: i64,
    quantity: i64,
) -> Result<(), QuotaError> {
    let Some(&limit) = sub.limits.get(meter.name) else {
        return Ok(());
    };
    let used = current_use(c.reborrow(), business, meter, sub).await?;
    if used.saturating_add(reserved).saturating_add(quantity) <= limit {
        return Ok(());
    }
    let mut refused = refusal(c, business, sub, meter, limit, quantity).await?;
    if let QuotaError::Exceeded(ex) = &mut refused {
        ex.used = used.saturating_add(reserved);
    }
    Err(refused)
}

/// The refusal of `quantity` of `meter`, with what is used now and which plans would allow it.
async fn refusal(
    mut c: Conn<'_>,
    business: Uuid,
    sub: &CurrentSubscription,
    meter: Meter<'_>,
    limit: i64,
    quantity: i64,
) -> sqlx::Result<QuotaError> {
    let kind = meter.kind;
    let used = current_use(c.reborrow(), business, meter, sub).await?;
    let upgrade_plans = plans_allowing(c, meter.name, used + quantity).await?;
    Ok(QuotaError::Exceeded(Box::new(Exceeded {
        meter: meter.name.to_owned(),
        kind,
        limit,
        used,
        requested: quantity,
        resets_at: (kind == MeterKind::PerCycle).then_some(sub.current_period_end),
        plan: sub.plan_code.clone(),
        upgrade_plans,
    })))
}

async fn current_use(
    c: Conn<'_>,
    business_id: Uuid,
    meter: Meter<'_>,
    sub: &CurrentSubscription,
) -> sqlx::Result<i64> {
    match meter.kind {
        MeterKind::PerCycle => {
            usage::counter(c, business_id, meter.name, sub.current_period_start).await
        }
        MeterKind::Gauge => usage::gauge(c, business_id, meter.name).await,
    }
}

/// Codes of the public, unarchived plans whose limit for `meter` admits `needed`.
async fn plans_allowing(c: Conn<'_>, meter: &str, needed: i64) -> sqlx::Result<Vec<String>> {
    Ok(plans::all(c)
        .await?
        .into_iter()
        .filter(|p| p.is_public && p.archived_at.is_none())
        .filter(|p| p.limits.get(meter).is_none_or(|&l| l >= needed))
        .map(|p| p.code)
        .collect())
}

/// One meter as the usage and entitlements endpoints show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MeterStatus {
    pub kind: MeterKind,
    pub used: i64,
    /// Null: the plan does not limit this meter.
    #[schema(required = true)]
    pub limit: Option<i64>,
    #[schema(required = true)]
    pub remaining: Option<i64>,
    /// When a per-cycle meter starts again at zero; null for gauges.
    #[schema(required = true)]
    pub resets_at: Option<Timestamp>,
}

/// Every meter the plan limits or the business has used, as of now.
pub async fn meter_statuses(
    c: Conn<'_>,
    principal: &Principal,
    meters: &Meters,
) -> sqlx::Result<BTreeMap<String, MeterStatus>> {
    let mut c = c;
    let Some(sub) = &principal.subscription else {
        return Ok(BTreeMap::new());
    };
    let mut used: BTreeMap<String, i64> = BTreeMap::new();
    for g in usage::gauges_of(c.reborrow(), principal.business_id).await? {
        used.insert(g.meter, g.used);
    }
    for row in usage::counters_for_period(
        c.reborrow(),
        principal.business_id,
        sub.current_period_start,
    )
    .await?
    {
        used.insert(row.meter, row.used);
    }
    Ok(statuses(Some(sub), meters, &used))
}

/// What [`dashboard_figures`] reads of one business for one period: its credit balance and
/// what it has used of each meter (gauges, and the period's counters).
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub balance: i64,
    pub used: BTreeMap<String, i64>,
}

impl Figures {
    /// The status of every meter `sub` limits or the business has used.
    pub fn statuses(
        &self,
        sub: Option<&CurrentSubscription>,
        meters: &Meters,
    ) -> BTreeMap<String, MeterStatus> {
        statuses(sub, meters, &self.used)
    }
}

/// Which figures to read: a business, and the start of its current period (none without a
/// subscription: then no counter).
pub type FiguresOf = (Uuid, Option<Timestamp>);

/// The [`Figures`] of each business and period in `asks`, read in one statement.
pub async fn dashboard_figures(
    c: Conn<'_>,
    asks: &[FiguresOf],
) -> sqlx::Result<HashMap<FiguresOf, Figures>> {
    let mut out: HashMap<FiguresOf, Figures> =
        asks.iter().map(|&ask| (ask, Figures::default())).collect();
    for row in usage::dashboard_figures(c, asks).await? {
        match row.kind.as_str() {
            // A business's balance and gauges belong to every period asked of it.
            "balance" | "gauge" => {
                for ((business_id, _), figures) in out.iter_mut() {
                    if *business_id != row.business_id {
                        continue;
                    }
                    if row.kind == "balance" {
                        figures.balance = row.used;
                    } else {
                        figures.used.insert(row.meter.clone(), row.used);
                    }
                }
            }
            _ => {
                if let Some(figures) = out.get_mut(&(row.business_id, row.period_start)) {
                    figures.used.insert(row.meter, row.used);
                }
            }
        }
    }
    Ok(out)
}

/// The [`Figures`] of `business_id` for `sub`'s current period, read together with those other
/// requests ask for at the same moment (see [`crate::db::batch`]): the dashboard, the page
/// every customer opens first.
pub async fn figures_batched(
    app: &crate::app::App,
    business_id: Uuid,
    sub: Option<&CurrentSubscription>,
) -> anyhow::Result<Figures> {
    let reads = app
        .dashboard_reads
        .get(|| {
            let db = app.db.clone();
            move |asks: Vec<FiguresOf>| {
                let db = db.clone();
                async move {
                    // One statement sees one state on both databases: no transaction needed.
                    let mut single = db.single().await?;
                    Ok(dashboard_figures(single.conn(), &asks).await?)
                }
            }
        })
        .await;
    reads
        .get((business_id, sub.map(|s| s.current_period_start)))
        .await
}

/// Every meter the plan limits or the business has used (`used`), with its limit and reset.
fn statuses(
    sub: Option<&CurrentSubscription>,
    meters: &Meters,
    used: &BTreeMap<String, i64>,
) -> BTreeMap<String, MeterStatus> {
    let mut out = BTreeMap::new();
    let Some(sub) = sub else {
        return out;
    };
    let names = sub
        .limits
        .keys()
        .chain(used.keys())
        .cloned()
        .collect::<Vec<_>>();
    for meter in names {
        let kind = meters.get(&meter).kind;
        let used = used.get(&meter).copied().unwrap_or(0);
        let limit = sub.limits.get(&meter).copied();
        out.insert(
            meter,
            MeterStatus {
                kind,
                used,
                limit,
                remaining: limit.map(|l| (l - used).max(0)),
                resets_at: (kind == MeterKind::PerCycle).then_some(sub.current_period_end),
            },
        );
    }
    out
}

/// A past (or the current) cycle's use of the per-cycle meters.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CycleUsage {
    pub period_start: Timestamp,
    pub period_end: Timestamp,
    pub meters: BTreeMap<String, i64>,
}

/// The business's per-cycle use, newest cycle first, up to `cycles` cycles.
pub async fn history(
    c: Conn<'_>,
    business_id: Uuid,
    cycles: usize,
) -> sqlx::Result<Vec<CycleUsage>> {
    let rows = usage::counters_of(c, business_id, 10_000).await?;
    let mut out: Vec<CycleUsage> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(cycle) if cycle.period_start == row.period_start => {
                cycle.meters.insert(row.meter, row.used);
            }
            _ => {
                if out.len() == cycles {
                    break;
                }
                out.push(CycleUsage {
                    period_start: row.period_start,
                    period_end: row.period_end,
                    meters: BTreeMap::from([(row.meter, row.used)]),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_names_are_lowercase_identifiers() {
        for ok in ["recordings", "api_calls", "a", "v2_events"] {
            assert!(is_meter_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Recordings",
            "2x",
            "api-calls",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!is_meter_name(bad), "{bad}");
        }
    }

    #[test]
    fn gauges_are_declared_and_everything_else_counts_per_cycle() {
        let mut meters = Meters::default();
        assert_eq!(meters.get("members"), MEMBERS, "saaskit's own gauge");
        meters
            .declare("applications", MeterKind::Gauge)
            .expect("a new gauge");
        meters
            .declare("applications", MeterKind::Gauge)
            .expect("declared again alike");
        assert!(
            meters.declare("applications", MeterKind::PerCycle).is_err(),
            "one name, one kind"
        );
        assert_eq!(meters.get("applications").kind(), MeterKind::Gauge);
        assert_eq!(meters.get("recordings").kind(), MeterKind::PerCycle);
        assert_eq!(meters.get("api_calls").kind(), MeterKind::PerCycle);
    }
}
