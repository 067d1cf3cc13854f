use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

/// Something that happened to a business's subscription: who did it, when, before and after.
#[derive(Debug, Clone, FromRow)]
pub struct Event {
    pub id: Uuid,
    pub business_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub kind: String,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub created_at: Timestamp,
}

pub async fn insert(c: Conn<'_>, e: &Event) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO events (id, business_id, subscription_id, kind, actor_kind, actor_id, \
         before, after, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(e.id)
    .bind(e.business_id)
    .bind(e.subscription_id)
    .bind(&e.kind)
    .bind(&e.actor_kind)
    .bind(e.actor_id)
    .bind(&e.before)
    .bind(&e.after)
    .bind(e.created_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn list(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<Vec<Event>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, business_id, subscription_id, kind, actor_kind, actor_id, before, after, \
         created_at FROM events WHERE business_id = $1 ORDER BY created_at, id",
    )
    .bind(business_id)
    .fetch_all(&mut *c)
    .await)
}

/// Inserts many events in one statement per thousand.
pub async fn insert_many(mut c: Conn<'_>, events: &[Event]) -> sqlx::Result<()> {
    const COLS: usize = 9;
    for chunk in events.chunks(1000) {
        let rows = crate::db::values_list(c.backend(), chunk.len(), COLS, &[]);
        // Only placeholders are spliced in; every value is bound.
        let sql = format!(
            "INSERT INTO events (id, business_id, subscription_id, kind, actor_kind, actor_id, \
             before, after, created_at) VALUES {rows}"
        );
        on_conn!(c.reborrow(), c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for e in chunk {
                q = q
                    .bind(e.id)
                    .bind(e.business_id)
                    .bind(e.subscription_id)
                    .bind(&e.kind)
                    .bind(&e.actor_kind)
                    .bind(e.actor_id)
                    .bind(&e.before)
                    .bind(&e.after)
                    .bind(e.created_at);
            }
            q.execute(&mut *c).await?;
        });
    }
    Ok(())
}
