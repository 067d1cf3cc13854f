//! Payments: a business's account at the provider, every payment attempted, the ledger entries
//! they produced, and the provider's events already applied.

use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

/// A business's customer at the provider and its default card.
#[derive(Debug, Clone, FromRow)]
pub struct Account {
    pub business_id: Uuid,
    pub provider: String,
    pub customer_id: String,
    pub payment_method_id: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub card_exp_month: Option<i64>,
    pub card_exp_year: Option<i64>,
    pub flagged_at: Option<Timestamp>,
    pub flag_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

const ACCOUNT_COLUMNS: &str = "business_id, provider, customer_id, payment_method_id, \
    card_brand, card_last4, card_exp_month, card_exp_year, flagged_at, flag_reason, created_at, \
    updated_at";

pub async fn account(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<Option<Account>> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM payment_accounts WHERE business_id = $1");
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(business_id)
        .fetch_optional(&mut *c)
        .await)
}

pub async fn account_by_customer(c: Conn<'_>, customer_id: &str) -> sqlx::Result<Option<Account>> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM payment_accounts WHERE customer_id = $1");
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(customer_id)
        .fetch_optional(&mut *c)
        .await)
}

/// Inserts the account unless the business has one already (another request made it first).
pub async fn insert_account(c: Conn<'_>, a: &Account) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO payment_accounts (business_id, provider, customer_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(a.business_id)
    .bind(&a.provider)
    .bind(&a.customer_id)
    .bind(a.created_at)
    .bind(a.updated_at)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// The default card's id and what is shown of it (all `None`: no card).
#[derive(Debug, Clone, Default)]
pub struct CardOnFile {
    pub payment_method_id: Option<String>,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
}

pub async fn set_card(
    c: Conn<'_>,
    business_id: Uuid,
    card: &CardOnFile,
    now: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE payment_accounts SET payment_method_id = $2, card_brand = $3, card_last4 = $4, \
         card_exp_month = $5, card_exp_year = $6, updated_at = $7 WHERE business_id = $1",
    )
    .bind(business_id)
    .bind(&card.payment_method_id)
    .bind(&card.brand)
    .bind(&card.last4)
    .bind(card.exp_month)
    .bind(card.exp_year)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Flags the business (a dispute); `false` when it was flagged already.
pub async fn flag(
    c: Conn<'_>,
    business_id: Uuid,
    reason: &str,
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE payment_accounts SET flagged_at = $2, flag_reason = $3, updated_at = $2 \
         WHERE business_id = $1 AND flagged_at IS NULL",
    )
    .bind(business_id)
    .bind(now)
    .bind(reason)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

#[derive(Debug, Clone, FromRow)]
pub struct Payment {
    pub id: Uuid,
    pub business_id: Uuid,
    pub provider: String,
    /// `top_up`, `renewal` or `plan_change`.
    pub purpose: String,
    pub idempotency_key: String,
    pub amount: i64,
    pub currency: String,
    /// `pending`, `requires_action`, `succeeded` or `failed`.
    pub status: String,
    pub subscription_id: Option<Uuid>,
    pub period_start: Option<Timestamp>,
    pub attempt: Option<i64>,
    pub provider_payment_id: Option<String>,
    pub provider_charge_id: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    pub refunded_amount: i64,
    pub disputed_amount: i64,
    pub provider_updated_at: Option<i64>,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

const PAYMENT_COLUMNS: &str = "id, business_id, provider, purpose, idempotency_key, amount, \
    currency, status, subscription_id, period_start, attempt, provider_payment_id, \
    provider_charge_id, card_brand, card_last4, decline_code, failure_message, refunded_amount, \
    disputed_amount, provider_updated_at, actor_kind, actor_id, created_at, updated_at";

/// Claims `p.idempotency_key`: `false` when a payment holds it already.
pub async fn insert_payment(c: Conn<'_>, p: &Payment) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO payments (id, business_id, provider, purpose, idempotency_key, amount, \
         currency, status, subscription_id, period_start, attempt, card_brand, card_last4, \
         actor_kind, actor_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT DO NOTHING",
    )
    .bind(p.id)
    .bind(p.business_id)
    .bind(&p.provider)
    .bind(&p.purpose)
    .bind(&p.idempotency_key)
    .bind(p.amount)
    .bind(&p.currency)
    .bind(&p.status)
    .bind(p.subscription_id)
    .bind(p.period_start)
    .bind(p.attempt)
    .bind(&p.card_brand)
    .bind(&p.card_last4)
    .bind(&p.actor_kind)
    .bind(p.actor_id)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

pub async fn find_payment(c: Conn<'_>, id: Uuid) -> sqlx::Result<Option<Payment>> {
    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1");
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *c)
        .await)
}

pub async fn find_by_key(c: Conn<'_>, key: &str) -> sqlx::Result<Option<Payment>> {
    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE idempotency_key = $1");
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(&mut *c)
        .await)
}

/// The payment a provider's payment (intent) or charge id belongs to.
pub async fn find_by_provider_id(c: Conn<'_>, id: &str) -> sqlx::Result<Option<Payment>> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments \
         WHERE provider_payment_id = $1 OR provider_charge_id = $1"
    );
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *c)
        .await)
}

/// What a settled (or moved on) payment becomes.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    pub status: String,
    pub provider_payment_id: Option<String>,
    pub provider_charge_id: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    /// The provider's time of the fact (events), seconds.
    pub provider_time: Option<i64>,
}

/// Moves a payment to `s.status` if it is in one of `from` and no newer provider fact was
/// applied to it; `false` otherwise. Ids already known are kept when `s` has none.
pub async fn settle(
    c: Conn<'_>,
    id: Uuid,
    from: &[&str],
    s: &Settlement,
    now: Timestamp,
) -> sqlx::Result<bool> {
    let allowed = from
        .iter()
        .map(|st| format!("'{}'", st.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(", ");
    // Only the fixed status names above are spliced in; every value is bound.
    let sql = format!(
        "UPDATE payments SET status = $2, \
         provider_payment_id = COALESCE($3, provider_payment_id), \
         provider_charge_id = COALESCE($4, provider_charge_id), \
         decline_code = $5, failure_message = $6, \
         provider_updated_at = COALESCE($7, provider_updated_at), updated_at = $8 \
         WHERE id = $1 AND status IN ({allowed}) \
         AND ($7 IS NULL OR provider_updated_at IS NULL OR provider_updated_at <= $7)"
    );
    on_conn!(c, c => sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&s.status)
        .bind(&s.provider_payment_id)
        .bind(&s.provider_charge_id)
        .bind(&s.decline_code)
        .bind(&s.failure_message)
        .bind(s.provider_time)
        .bind(now)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Adds `delta` to a payment's refunded or disputed total.
pub async fn add_to_total(
    c: Conn<'_>,
    id: Uuid,
    refunded: i64,
    disputed: i64,
    now: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE payments SET refunded_amount = refunded_amount + $2, \
         disputed_amount = disputed_amount + $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(refunded)
    .bind(disputed)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// A business's payments, newest first, older than `before` if given.
pub async fn list(
    c: Conn<'_>,
    business_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Payment>> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE business_id = $1 \
         AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    );
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(business_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *c)
        .await)
}

/// The newest payment of a business.
pub async fn last(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<Option<Payment>> {
    Ok(list(c, business_id, None, 1).await?.into_iter().next())
}

/// Renewal payments still `pending`, unanswered by the provider, since before `before` (their
/// provider call was cut short).
pub async fn unsettled(c: Conn<'_>, before: Timestamp, limit: i64) -> sqlx::Result<Vec<Payment>> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE status = 'pending' AND updated_at < $1 \
         AND purpose = 'renewal' AND provider_payment_id IS NULL ORDER BY updated_at LIMIT $2"
    );
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *c)
        .await)
}

/// Pushes a pending payment's `updated_at` ahead: the worker that resumes it holds it.
pub async fn touch_pending(
    c: Conn<'_>,
    id: Uuid,
    seen: Timestamp,
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE payments SET updated_at = $3 WHERE id = $1 AND status = 'pending' AND updated_at = $2",
    )
    .bind(id)
    .bind(seen)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// One ledger entry a payment produced.
#[derive(Debug, Clone, FromRow)]
pub struct PaymentEntry {
    pub payment_id: Uuid,
    pub id: Uuid,
    pub kind: String,
    pub amount: i64,
    pub created_at: Timestamp,
}

pub async fn entries_of(c: Conn<'_>, payments: &[Uuid]) -> sqlx::Result<Vec<PaymentEntry>> {
    if payments.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (1..=payments.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    // Only placeholders are spliced in; every value is bound.
    let sql = format!(
        "SELECT payment_id, id, kind, amount, created_at FROM ledger_entries \
         WHERE payment_id IN ({placeholders}) ORDER BY created_at, id"
    );
    on_conn!(c, c => {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for id in payments {
            q = q.bind(*id);
        }
        q.fetch_all(&mut *c).await
    })
}

/// A ledger entry that records a provider fact, once: `false` when `provider_ref` was recorded
/// already.
#[derive(Debug, Clone)]
pub struct ProviderEntry {
    pub id: Uuid,
    pub business_id: Uuid,
    pub kind: &'static str,
    pub amount: i64,
    pub currency: String,
    pub note: String,
    pub payment_id: Uuid,
    pub provider_ref: String,
    pub created_at: Timestamp,
}

pub async fn insert_entry(c: Conn<'_>, e: &ProviderEntry) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO ledger_entries (id, business_id, kind, amount, currency, note, actor_kind, \
         created_at, payment_id, provider_ref) \
         VALUES ($1, $2, $3, $4, $5, $6, 'system', $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(e.id)
    .bind(e.business_id)
    .bind(e.kind)
    .bind(e.amount)
    .bind(&e.currency)
    .bind(&e.note)
    .bind(e.created_at)
    .bind(e.payment_id)
    .bind(&e.provider_ref)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Records that the provider's event `id` is being applied; `false` when it was already.
pub async fn insert_event(
    c: Conn<'_>,
    id: &str,
    provider: &str,
    kind: &str,
    created: i64,
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO provider_events (id, provider, type, created, received_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(provider)
    .bind(kind)
    .bind(created)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// A current subscription due for renewal (its period ended by `now`) whose business has a card
/// on file: what the renewal charge needs to know.
#[derive(Debug, Clone, FromRow)]
pub struct DueRenewal {
    pub subscription_id: Uuid,
    pub business_id: Uuid,
    pub status: String,
    pub plan_id: Uuid,
    pub pending_plan_id: Option<Uuid>,
    pub current_period_end: Timestamp,
}

pub async fn due_renewals_with_card(
    c: Conn<'_>,
    now: Timestamp,
    after: (Timestamp, Uuid),
    limit: i64,
) -> sqlx::Result<Vec<DueRenewal>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT s.id AS subscription_id, s.business_id, s.status, s.plan_id, s.pending_plan_id, \
         s.current_period_end FROM subscriptions s \
         JOIN payment_accounts a ON a.business_id = s.business_id \
         WHERE s.is_current AND s.current_period_end <= $1 \
         AND s.status IN ('trialing', 'active', 'past_due') AND NOT s.cancel_at_period_end \
         AND a.payment_method_id IS NOT NULL AND (s.current_period_end, s.id) > ($2, $3) \
         ORDER BY s.current_period_end, s.id LIMIT $4",
    )
    .bind(now)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// The addresses of the active staff (told about disputes).
pub async fn staff_emails(c: Conn<'_>) -> sqlx::Result<Vec<String>> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT email FROM users WHERE is_staff AND is_active AND email IS NOT NULL",
    )
    .fetch_all(&mut *c)
    .await)
}
