//! The resource toolkit: a business-scoped resource declared, not hand-written. From a
//! [`Resource`] — its fields, its meter, how it is deleted and who may do what — come five
//! routes and their OpenAPI description:
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /{plural}?limit=&cursor=` | dashboard readers (`read_role`) | oldest first, a page at a time |
//! | `POST /{plural}` | `write_role` | 201; consumes the meter; accepts `Idempotency-Key` |
//! | `GET /{plural}/{id}` | dashboard readers | 404 `not_found` when absent or deleted |
//! | `PATCH /{plural}/{id}` | `write_role` | partial: absent fields stay |
//! | `DELETE /{plural}/{id}` | `delete_role` | 204; soft (kept, hidden) or hard; a gauge goes down |
//!
//! The table has `id` (UUIDv7), `business_id`, one column per field, `created_at`,
//! `updated_at`, and `deleted_at` when deletion is soft. Bodies are checked against the fields
//! (type, length or range, control characters, unknown fields refused) and then by the
//! resource's own hook, every problem reported at once as 422 `validation_failed`.
//!
//! ```
//! use saaskit::domain::Role;
//! use saaskit::metering::Meter;
//! use saaskit::resource::{Field, Resource};
//!
//! const PROJECTS: Meter<'static> = Meter::gauge("projects");
//!
//! let projects = Resource::new("projects", "project")
//!     .tag("projects")
//!     .field(Field::text("name").chars(1, 100))
//!     .field(Field::integer("priority").range(0, 9).optional())
//!     .meter(PROJECTS)
//!     .delete_role(Role::Admin);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, Paths, Ref, RefOr, Required, ResponseBuilder,
};
use utoipa::{IntoParams, PartialSchema as _};
use uuid::Uuid;

use crate::app::AppState;
use crate::db::{Conn, Timestamp};
use crate::domain::{Role, is_identifier, parse_text};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::Route;
use crate::http::extract::{ApiJson, ApiQuery, Dashboard, DashboardRead, Idempotency, PathId};
use crate::metering::idempotency::{self, Stored};
use crate::metering::{self, Meter, MeterKind};
use crate::on_conn;

/// Reads one row of `SELECT id, <fields>, created_at, updated_at` into an [`Item`].
macro_rules! read_row {
    ($spec:expr, $row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        let mut values = Values::default();
        for field in &$spec.r.fields {
            let cell = match field.kind {
                Kind::Text { .. } => Cell::Text(row.try_get(field.name)?),
                Kind::Integer { .. } => Cell::Int(row.try_get(field.name)?),
                Kind::Boolean => Cell::Bool(row.try_get(field.name)?),
            };
            values.0.insert(field.name, cell);
        }
        Ok::<Item, sqlx::Error>(Item {
            id: row.try_get("id")?,
            values,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }};
}

/// Binds a [`Cell`] to a query, typed so that `NULL` has its column's type.
macro_rules! bind {
    ($query:expr, $cell:expr) => {
        match $cell {
            Cell::Text(v) => $query.bind(v),
            Cell::Int(v) => $query.bind(v),
            Cell::Bool(v) => $query.bind(v),
        }
    };
}

/// The type of a field and what it accepts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Trimmed; `min..=max` characters; no control or invisible formatting characters.
    Text {
        min: usize,
        max: usize,
    },
    Integer {
        min: i64,
        max: i64,
    },
    Boolean,
}

/// One field of a resource: a column of its table and a property of its JSON.
#[derive(Debug, Clone)]
pub struct Field {
    name: &'static str,
    kind: Kind,
    optional: bool,
    description: Option<&'static str>,
}

impl Field {
    /// Text of 1 to 200 characters (change with [`Field::chars`]); a `TEXT` column.
    pub const fn text(name: &'static str) -> Field {
        Field::of(name, Kind::Text { min: 1, max: 200 })
    }

    /// A whole number (any `i64`; narrow with [`Field::range`]); a `BIGINT` column.
    pub const fn integer(name: &'static str) -> Field {
        Field::of(
            name,
            Kind::Integer {
                min: i64::MIN,
                max: i64::MAX,
            },
        )
    }

    /// `true` or `false`; a `BOOLEAN` column.
    pub const fn boolean(name: &'static str) -> Field {
        Field::of(name, Kind::Boolean)
    }

    const fn of(name: &'static str, kind: Kind) -> Field {
        Field {
            name,
            kind,
            optional: false,
            description: None,
        }
    }

    /// Text of `min` to `max` characters, after trimming.
    pub const fn chars(mut self, min: usize, max: usize) -> Field {
        if let Kind::Text { .. } = self.kind {
            self.kind = Kind::Text { min, max };
        }
        self
    }

    /// A number from `min` to `max`, both included.
    pub const fn range(mut self, min: i64, max: i64) -> Field {
        if let Kind::Integer { .. } = self.kind {
            self.kind = Kind::Integer { min, max };
        }
        self
    }

    /// May be absent when created, and `null` (a nullable column). Fields are required otherwise.
    pub const fn optional(mut self) -> Field {
        self.optional = true;
        self
    }

    /// What the field means, for the OpenAPI document.
    pub const fn describe(mut self, description: &'static str) -> Field {
        self.description = Some(description);
        self
    }

    /// Parses the JSON value sent for this field.
    fn parse(&self, value: &Value) -> Result<Cell, FieldError> {
        let problem = |code, message: String| FieldError::new(self.name, code, message);
        if value.is_null() {
            return if self.optional {
                Ok(self.null())
            } else {
                Err(problem("required", "This field is required.".into()))
            };
        }
        match self.kind {
            Kind::Text { min, max } => {
                let Some(text) = value.as_str() else {
                    return Err(problem("invalid_type", "A string.".into()));
                };
                let text = parse_text(text, max, "This field")
                    .map_err(|invalid| problem(invalid.code, invalid.message))?;
                match text.chars().count() {
                    0 if min > 0 => Err(problem(
                        "required",
                        format!("This field is required: {min} to {max} characters."),
                    )),
                    n if n < min => {
                        Err(problem("too_short", format!("At least {min} characters.")))
                    }
                    _ => Ok(Cell::Text(Some(text))),
                }
            }
            // `3.0` is the integer 3 in JSON (and to the document's `integer`).
            Kind::Integer { min, max } => match value.as_i64().or_else(|| {
                let mut whole = value.clone();
                crate::http::extract::integral_numbers_as_integers(&mut whole)
                    .then(|| whole.as_i64())
                    .flatten()
            }) {
                Some(n) if (min..=max).contains(&n) => Ok(Cell::Int(Some(n))),
                Some(_) => Err(problem("out_of_range", format!("From {min} to {max}."))),
                None => Err(problem("invalid_type", "A whole number.".into())),
            },
            Kind::Boolean => value
                .as_bool()
                .map(|b| Cell::Bool(Some(b)))
                .ok_or_else(|| problem("invalid_type", "true or false.".into())),
        }
    }

    fn null(&self) -> Cell {
        match self.kind {
            Kind::Text { .. } => Cell::Text(None),
            Kind::Integer { .. } => Cell::Int(None),
            Kind::Boolean => Cell::Bool(None),
        }
    }

    fn schema(&self) -> RefOr<Schema> {
        let (kind, format) = match self.kind {
            Kind::Text { .. } => (Type::String, None),
            Kind::Integer { .. } => (Type::Integer, Some(KnownFormat::Int64)),
            Kind::Boolean => (Type::Boolean, None),
        };
        let schema_type = if self.optional {
            SchemaType::from_iter([kind, Type::Null])
        } else {
            SchemaType::Type(kind)
        };
        let mut object = ObjectBuilder::new()
            .schema_type(schema_type)
            .format(format.map(SchemaFormat::KnownFormat))
            .description(self.description);
        match self.kind {
            Kind::Text { min, max } => {
                // Judged as `parse` judges it: the length as sent, and `min` characters kept
                // once trimmed (which `minLength` alone cannot say).
                object = object
                    .min_length((min > 0).then_some(min))
                    .max_length(Some(max))
                    .pattern(Some(crate::domain::text_pattern_keeping(min)));
            }
            Kind::Integer { min, max } => {
                if min != i64::MIN {
                    object = object.minimum(Some(min));
                }
                if max != i64::MAX {
                    object = object.maximum(Some(max));
                }
            }
            Kind::Boolean => {}
        }
        RefOr::T(Schema::Object(object.build()))
    }
}

/// A field's value, typed for binding (a `None` binds SQL `NULL` of the column's type).
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
}

impl Cell {
    fn json(&self) -> Value {
        match self {
            Cell::Text(v) => v.clone().map_or(Value::Null, Value::String),
            Cell::Int(v) => v.map_or(Value::Null, Value::from),
            Cell::Bool(v) => v.map_or(Value::Null, Value::Bool),
        }
    }
}

/// The values of one item as the validation hook sees them: on creation, what was sent (absent
/// optional fields are null); on a change, the stored item with the change applied.
#[derive(Debug, Clone, Default)]
pub struct Values(BTreeMap<&'static str, Cell>);

impl Values {
    /// A text field's value (`None` when null).
    pub fn text(&self, field: &str) -> Option<&str> {
        match self.0.get(field) {
            Some(Cell::Text(v)) => v.as_deref(),
            _ => None,
        }
    }

    /// A whole-number field's value.
    pub fn integer(&self, field: &str) -> Option<i64> {
        match self.0.get(field) {
            Some(Cell::Int(v)) => *v,
            _ => None,
        }
    }

    /// A boolean field's value.
    pub fn boolean(&self, field: &str) -> Option<bool> {
        match self.0.get(field) {
            Some(Cell::Bool(v)) => *v,
            _ => None,
        }
    }
}

/// The columns the toolkit writes itself, which no field may be named.
pub const RESERVED_COLUMNS: &[&str] = &[
    "id",
    "business_id",
    "created_at",
    "updated_at",
    "deleted_at",
];

/// What happens on `DELETE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The row stays with `deleted_at` set (what refers to it keeps its history) and is hidden.
    Soft,
    /// The row is deleted.
    Hard,
}

type Hook = Arc<dyn Fn(&Values) -> Vec<FieldError> + Send + Sync>;

/// A business-scoped resource: declare it, then register it with
/// [`crate::product::Product::resource`].
#[derive(Clone)]
pub struct Resource {
    plural: &'static str,
    singular: &'static str,
    table: &'static str,
    tag: Option<&'static str>,
    description: Option<&'static str>,
    fields: Vec<Field>,
    meter: Option<Meter<'static>>,
    deletion: Deletion,
    read_role: Option<Role>,
    write_role: Role,
    delete_role: Role,
    validate: Option<Hook>,
}

impl Resource {
    /// A resource served at `/{plural}` and stored in the table `plural` (change it with
    /// [`Resource::table`]); `singular` names one item in summaries and schema names.
    /// Deletion is soft; members write, admins delete, every member (bots included) reads.
    pub fn new(plural: &'static str, singular: &'static str) -> Resource {
        Resource {
            plural,
            singular,
            table: plural,
            tag: None,
            description: None,
            fields: Vec::new(),
            meter: None,
            deletion: Deletion::Soft,
            read_role: None,
            write_role: Role::Member,
            delete_role: Role::Admin,
            validate: None,
        }
    }

    pub fn table(mut self, table: &'static str) -> Resource {
        self.table = table;
        self
    }

    /// The OpenAPI tag of its operations (declare it with [`crate::product::Product::tag`]).
    pub fn tag(mut self, tag: &'static str) -> Resource {
        self.tag = Some(tag);
        self
    }

    /// A sentence added to the description of its operations.
    pub fn describe(mut self, description: &'static str) -> Resource {
        self.description = Some(description);
        self
    }

    pub fn field(mut self, field: Field) -> Resource {
        self.fields.push(field);
        self
    }

    /// Creating one consumes `meter` (402 `quota_exceeded` at the plan's limit). A gauge goes
    /// down again when one is deleted; a per-cycle meter does not.
    pub fn meter(mut self, meter: Meter<'static>) -> Resource {
        self.meter = Some(meter);
        self
    }

    pub fn hard_delete(mut self) -> Resource {
        self.deletion = Deletion::Hard;
        self
    }

    /// The least role that may list and read (default: any member, bots included).
    pub fn read_role(mut self, role: Role) -> Resource {
        self.read_role = Some(role);
        self
    }

    /// The least role that may create and change (default: member).
    pub fn write_role(mut self, role: Role) -> Resource {
        self.write_role = role;
        self
    }

    /// The least role that may delete (default: admin).
    pub fn delete_role(mut self, role: Role) -> Resource {
        self.delete_role = role;
        self
    }

    /// A check beyond each field's own, run on creation and on every change (with the stored
    /// item's values merged in): each problem it returns is reported with the fields'.
    pub fn validate(
        mut self,
        hook: impl Fn(&Values) -> Vec<FieldError> + Send + Sync + 'static,
    ) -> Resource {
        self.validate = Some(Arc::new(hook));
        self
    }

    /// Its meter, if it has one (the product declares it).
    pub fn metered_by(&self) -> Option<Meter<'static>> {
        self.meter
    }

    /// Checks the declaration: identifiers that are safe to write into SQL, distinct fields.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            is_identifier(self.plural) && is_identifier(self.singular) && is_identifier(self.table),
            "resource {:?}: names are lowercase identifiers (a-z, 0-9, _)",
            self.plural
        );
        let mut seen = std::collections::BTreeSet::new();
        for field in &self.fields {
            anyhow::ensure!(
                is_identifier(field.name) && !RESERVED_COLUMNS.contains(&field.name),
                "resource {}: {:?} cannot be a field's name",
                self.plural,
                field.name
            );
            anyhow::ensure!(
                seen.insert(field.name),
                "resource {}: field {} is declared twice",
                self.plural,
                field.name
            );
        }
        Ok(())
    }

    /// Its two routes (`/{plural}` and `/{plural}/{id}`), each with its handlers and its part
    /// of the OpenAPI document.
    pub fn routes(self) -> Vec<Route> {
        self.into_parts().0
    }

    /// Its routes, its pages (`/{plural}`, see [`pages`]) and their navigation entry.
    /// The webhook event types the resource emits: `<singular>.created`, `.updated` and
    /// `.deleted`, the first two with the item as its routes show it.
    pub fn event_types(&self) -> Vec<crate::webhooks::EventType> {
        let mut properties = serde_json::Map::new();
        properties.insert(
            "id".into(),
            serde_json::json!({"type": "string", "format": "uuid"}),
        );
        for field in &self.fields {
            let schema = serde_json::to_value(field.schema()).unwrap_or(Value::Null);
            properties.insert(field.name.into(), schema);
        }
        for at in ["created_at", "updated_at"] {
            properties.insert(
                at.into(),
                serde_json::json!({"type": "string", "format": "date-time"}),
            );
        }
        let required: Vec<&String> = properties.keys().collect();
        let item =
            serde_json::json!({"type": "object", "properties": properties, "required": required});
        crate::webhooks::catalogue::resource_events(self.singular, item)
    }

    pub fn into_parts(self) -> (Vec<Route>, axum::Router<AppState>, crate::web::NavLink) {
        let spec = Arc::new(Spec::new(self));
        let (pages, link) = spec.pages();
        (
            vec![spec.collection_route(), spec.item_route()],
            pages,
            link,
        )
    }
}

pub mod pages;

/// A resource with its SQL written once.
struct Spec {
    r: Resource,
    list: String,
    get: String,
    insert: String,
    update: String,
    delete: String,
    /// Schema names: the item, the create body, the change body, a page.
    names: [String; 4],
}

impl Spec {
    fn new(r: Resource) -> Spec {
        let columns: Vec<&str> = r.fields.iter().map(|f| f.name).collect();
        let select = std::iter::once("id")
            .chain(columns.iter().copied())
            .chain(["created_at", "updated_at"])
            .collect::<Vec<_>>()
            .join(", ");
        let table = r.table;
        let live = match r.deletion {
            Deletion::Soft => " AND deleted_at IS NULL",
            Deletion::Hard => "",
        };
        let n = columns.len();
        let list = format!(
            "SELECT {select} FROM {table} WHERE business_id = $1{live} \
             AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
        );
        let get = format!("SELECT {select} FROM {table} WHERE id = $1 AND business_id = $2{live}");
        let placeholders: Vec<String> = (3..3 + n).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO {table} (id, business_id{}, created_at, updated_at) \
             VALUES ($1, $2{}, ${}, ${})",
            columns.iter().map(|c| format!(", {c}")).collect::<String>(),
            placeholders
                .iter()
                .map(|p| format!(", {p}"))
                .collect::<String>(),
            3 + n,
            3 + n
        );
        let sets: String = columns
            .iter()
            .zip(&placeholders)
            .map(|(c, p)| format!("{c} = {p}, "))
            .collect();
        let update = format!(
            "UPDATE {table} SET {sets}updated_at = ${} WHERE id = $1 AND business_id = $2{live}",
            3 + n
        );
        let delete = match r.deletion {
            Deletion::Soft => format!(
                "UPDATE {table} SET deleted_at = $3, updated_at = $3 \
                 WHERE id = $1 AND business_id = $2 AND deleted_at IS NULL"
            ),
            Deletion::Hard => format!("DELETE FROM {table} WHERE id = $1 AND business_id = $2"),
        };
        let item = pascal(r.singular);
        let names = [
            item.clone(),
            format!("New{item}"),
            format!("{item}Change"),
            format!("{item}Page"),
        ];
        Spec {
            r,
            list,
            get,
            insert,
            update,
            delete,
            names,
        }
    }

    /// Parses a body: every field on creation (`creating`), the fields present on a change.
    fn parse(&self, body: &Map<String, Value>, creating: bool) -> Result<Values, Vec<FieldError>> {
        let mut problems: Vec<FieldError> = body
            .keys()
            .filter(|k| !self.r.fields.iter().any(|f| f.name == k.as_str()))
            .map(|k| FieldError::new(k.as_str(), "unknown_field", "There is no such field."))
            .collect();
        let mut values = Values::default();
        for field in &self.r.fields {
            let value = match body.get(field.name) {
                Some(value) => value,
                None if !creating => continue,
                None => &Value::Null,
            };
            match field.parse(value) {
                Ok(cell) => {
                    values.0.insert(field.name, cell);
                }
                Err(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(values)
        } else {
            Err(problems)
        }
    }

    /// 403 unless the caller's role may list and read (every member when no read role is set).
    fn may_read(&self, p: &crate::accounts::Principal) -> ApiResult<()> {
        if let Some(role) = self.r.read_role {
            p.require_role(role)?;
        }
        Ok(())
    }

    /// `values` in the order of the fields (the placeholders `$3…` of the insert and update).
    fn cells<'v>(&'v self, values: &'v Values) -> impl Iterator<Item = Cell> + 'v {
        self.r.fields.iter().map(|field| {
            values
                .0
                .get(field.name)
                .cloned()
                .unwrap_or_else(|| field.null())
        })
    }

    fn check(&self, values: &Values) -> ApiResult<()> {
        let problems = self
            .r
            .validate
            .as_ref()
            .map(|hook| hook(values))
            .unwrap_or_default();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(problems))
        }
    }

    async fn find(&self, c: Conn<'_>, business: Uuid, id: Uuid) -> sqlx::Result<Option<Item>> {
        let sql = sqlx::AssertSqlSafe(self.get.clone());
        on_conn!(c, c => {
            let row = sqlx::query(sql).bind(id).bind(business).fetch_optional(&mut *c).await?;
            row.map(|row| read_row!(self, row)).transpose()
        })
    }

    async fn list(
        &self,
        app: &AppState,
        p: &crate::accounts::Principal,
        q: PageQuery,
    ) -> ApiResult<Json<Value>> {
        self.may_read(p)?;
        let limit = crate::http::extract::page_limit(q.limit, 50, 100)
            .map_err(|e| ApiError::validation(vec![e]))?;
        let mut tx = app.db.read().await?;
        let sql = sqlx::AssertSqlSafe(self.list.clone());
        let rows: Vec<Item> = on_conn!(tx.conn(), c => {
            let rows = sqlx::query(sql)
                .bind(p.business_id)
                .bind(q.cursor)
                .bind(limit + 1)
                .fetch_all(&mut *c)
                .await?;
            rows.iter().map(|row| read_row!(self, row)).collect::<sqlx::Result<Vec<_>>>()
        })?;
        let more = rows.len() as i64 > limit;
        let page: Vec<Item> = rows.into_iter().take(limit as usize).collect();
        let next_cursor = match page.last() {
            Some(last) if more => Value::String(last.id.to_string()),
            _ => Value::Null,
        };
        let data: Vec<Value> = page.iter().map(|item| item.json(self)).collect();
        Ok(Json(
            serde_json::json!({ "data": data, "next_cursor": next_cursor }),
        ))
    }

    async fn create(
        &self,
        app: &AppState,
        p: &crate::accounts::Principal,
        key: Option<&idempotency::IdempotencyKey>,
        body: Map<String, Value>,
    ) -> ApiResult<(StatusCode, Stored)> {
        p.require_role(self.r.write_role)?;
        let values = self.parse(&body, true).map_err(ApiError::validation)?;
        self.check(&values)?;
        let now = app.clock.now();
        let sent: Map<String, Value> = values
            .0
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.json()))
            .collect();
        let fingerprint = idempotency::fingerprint(&format!("POST /{}", self.r.plural), &sent);
        let stored = idempotency::run(app, p.business_id, key, &fingerprint, 201, async |tx| {
            if let Some(meter) = self.r.meter {
                metering::consume(tx, p, meter, 1, now).await?;
            }
            let item = Item {
                id: Uuid::now_v7(),
                values,
                created_at: now,
                updated_at: now,
            };
            let sql = sqlx::AssertSqlSafe(self.insert.clone());
            on_conn!(tx.conn(), c => {
                let mut q = sqlx::query(sql).bind(item.id).bind(p.business_id);
                for cell in self.cells(&item.values) {
                    q = bind!(q, cell);
                }
                q.bind(now).execute(&mut *c).await?;
            });
            let json = item.json(self);
            self.emit(tx.conn(), now, p.business_id, "created", &json)
                .await?;
            Ok::<Value, ApiError>(json)
        })
        .await?;
        Ok((StatusCode::CREATED, stored))
    }

    async fn get(
        &self,
        app: &AppState,
        p: &crate::accounts::Principal,
        id: Uuid,
    ) -> ApiResult<Json<Value>> {
        self.may_read(p)?;
        let mut tx = app.db.read().await?;
        let item = self.find(tx.conn(), p.business_id, id).await?;
        item.map(|item| Json(item.json(self)))
            .ok_or_else(ApiError::not_found)
    }

    async fn update(
        &self,
        app: &AppState,
        p: &crate::accounts::Principal,
        id: Uuid,
        body: Map<String, Value>,
    ) -> ApiResult<Json<Value>> {
        p.require_role(self.r.write_role)?;
        let change = self.parse(&body, false).map_err(ApiError::validation)?;
        let mut tx = app.db.begin().await?;
        let mut item = self
            .find(tx.conn(), p.business_id, id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        if change
            .0
            .iter()
            .all(|(k, v)| item.values.0.get(k) == Some(v))
        {
            return Ok(Json(item.json(self)));
        }
        item.values.0.extend(change.0);
        self.check(&item.values)?;
        item.updated_at = app.clock.now();
        let sql = sqlx::AssertSqlSafe(self.update.clone());
        on_conn!(tx.conn(), c => {
            let mut q = sqlx::query(sql).bind(id).bind(p.business_id);
            for cell in self.cells(&item.values) {
                q = bind!(q, cell);
            }
            q.bind(item.updated_at).execute(&mut *c).await?;
        });
        let json = item.json(self);
        self.emit(tx.conn(), item.updated_at, p.business_id, "updated", &json)
            .await?;
        tx.commit().await?;
        Ok(Json(json))
    }

    async fn delete(
        &self,
        app: &AppState,
        p: &crate::accounts::Principal,
        id: Uuid,
    ) -> ApiResult<StatusCode> {
        p.require_role(self.r.delete_role)?;
        let now = app.clock.now();
        let mut tx = app.db.begin().await?;
        let sql = sqlx::AssertSqlSafe(self.delete.clone());
        let soft = self.r.deletion == Deletion::Soft;
        let deleted = on_conn!(tx.conn(), c => {
            let q = sqlx::query(sql).bind(id).bind(p.business_id);
            // Only a soft deletion records when ($3).
            let q = if soft { q.bind(now) } else { q };
            q.execute(&mut *c).await?.rows_affected()
        });
        if deleted == 0 {
            return Err(ApiError::not_found());
        }
        if let Some(meter) = self.r.meter.filter(|m| m.kind() == MeterKind::Gauge) {
            metering::release(&mut tx, p.business_id, meter, 1).await?;
        }
        let data = serde_json::json!({"business_id": p.business_id, "id": id});
        crate::webhooks::emit(
            tx.conn(),
            now,
            p.business_id,
            &format!("{}.deleted", self.r.singular),
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(StatusCode::NO_CONTENT)
    }

    /// Emits `<singular>.<what>` with the item as its routes show it.
    async fn emit(
        &self,
        c: Conn<'_>,
        now: Timestamp,
        business: Uuid,
        what: &str,
        item: &Value,
    ) -> sqlx::Result<usize> {
        let singular = self.r.singular;
        let data = serde_json::json!({"business_id": business, singular: item});
        crate::webhooks::emit(c, now, business, &format!("{singular}.{what}"), data).await
    }
}

/// One stored item.
struct Item {
    id: Uuid,
    values: Values,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl Item {
    fn json(&self, spec: &Spec) -> Value {
        let mut object = Map::new();
        object.insert("id".into(), Value::String(self.id.to_string()));
        for field in &spec.r.fields {
            let value = self
                .values
                .0
                .get(field.name)
                .map_or(Value::Null, Cell::json);
            object.insert(field.name.into(), value);
        }
        for (name, at) in [
            ("created_at", self.created_at),
            ("updated_at", self.updated_at),
        ] {
            object.insert(name.into(), serde_json::to_value(at).unwrap_or(Value::Null));
        }
        Value::Object(object)
    }
}

/// `?limit=&cursor=` of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

// ---- routes and their description ----

impl Spec {
    fn collection_route(self: &Arc<Spec>) -> Route {
        let (list, create) = (self.clone(), self.clone());
        let router = axum::routing::get(
            move |State(app): State<AppState>,
                  DashboardRead(p): DashboardRead,
                  ApiQuery(q): ApiQuery<PageQuery>| async move {
                list.list(&app, &p, q).await
            },
        )
        .post(
            move |State(app): State<AppState>,
                  Dashboard(p): Dashboard,
                  Idempotency(key): Idempotency,
                  ApiJson(body): ApiJson<Map<String, Value>>| async move {
                create.create(&app, &p, key.as_ref(), body).await
            },
        );
        let path = format!("/{}", self.r.plural);
        let mut paths = Paths::new();
        paths.add_path_operation(&path, vec![HttpMethod::Get], self.list_operation());
        paths.add_path_operation(&path, vec![HttpMethod::Post], self.create_operation());
        (self.schemas(), paths, router)
    }

    fn item_route(self: &Arc<Spec>) -> Route {
        let (get, update, delete) = (self.clone(), self.clone(), self.clone());
        let router = axum::routing::get(
            move |State(app): State<AppState>, DashboardRead(p): DashboardRead, PathId(id): PathId| async move {
                get.get(&app, &p, id).await
            },
        )
        .patch(
            move |State(app): State<AppState>,
                  Dashboard(p): Dashboard,
                  PathId(id): PathId,
                  ApiJson(body): ApiJson<Map<String, Value>>| async move {
                update.update(&app, &p, id, body).await
            },
        )
        .delete(
            move |State(app): State<AppState>, Dashboard(p): Dashboard, PathId(id): PathId| async move {
                delete.delete(&app, &p, id).await
            },
        );
        let path = format!("/{}/{{id}}", self.r.plural);
        let mut paths = Paths::new();
        paths.add_path_operation(&path, vec![HttpMethod::Get], self.get_operation());
        paths.add_path_operation(&path, vec![HttpMethod::Patch], self.update_operation());
        paths.add_path_operation(&path, vec![HttpMethod::Delete], self.delete_operation());
        (Vec::new(), paths, router)
    }

    fn schemas(&self) -> Vec<(String, RefOr<Schema>)> {
        let [item, new, change, page] = self.names.clone();
        let timestamp = Timestamp::schema();
        let mut item_schema = ObjectBuilder::new()
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            )
            .required("id");
        let mut new_schema = ObjectBuilder::new().additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ));
        let mut change_schema = ObjectBuilder::new().additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ));
        for field in &self.r.fields {
            item_schema = item_schema
                .property(field.name, field.schema())
                .required(field.name);
            new_schema = new_schema.property(field.name, field.schema());
            if !field.optional {
                new_schema = new_schema.required(field.name);
            }
            change_schema = change_schema.property(field.name, field.schema());
        }
        let item_schema = item_schema
            .property("created_at", timestamp.clone())
            .required("created_at")
            .property("updated_at", timestamp)
            .required("updated_at")
            .description(Some(format!("One {}.", self.r.singular.replace('_', " "))));
        let page_schema = ObjectBuilder::new()
            .property(
                "data",
                ArrayBuilder::new().items(Ref::from_schema_name(&item)),
            )
            .required("data")
            .property(
                "next_cursor",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .description(Some(
                        "Pass as `cursor` for the next page; null on the last one.",
                    )),
            )
            .required("next_cursor");
        vec![
            (item, RefOr::T(Schema::Object(item_schema.build()))),
            (new, RefOr::T(Schema::Object(new_schema.build()))),
            (change, RefOr::T(Schema::Object(change_schema.build()))),
            (page, RefOr::T(Schema::Object(page_schema.build()))),
        ]
    }

    fn operation(
        &self,
        id: &str,
        summary: String,
        description: Option<String>,
        role: Option<Role>,
    ) -> OperationBuilder {
        let role = role.map(|role| format!("Needs the {role} role or higher."));
        let description = [description, self.r.description.map(str::to_owned), role]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let description = Some(description).filter(|d| !d.is_empty());
        OperationBuilder::new()
            .operation_id(Some(id.to_owned()))
            .tags(self.r.tag.map(|t| vec![t.to_owned()]))
            .summary(Some(summary))
            .description(description)
            .securities(Some([
                SecurityRequirement::new("session", Vec::<String>::new()),
                SecurityRequirement::new("bot_token", Vec::<String>::new()),
            ]))
    }

    fn id_parameter(&self) -> utoipa::openapi::path::Parameter {
        ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(format!(
                "The {}'s id.",
                self.r.singular.replace('_', " ")
            )))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            ))
            .build()
    }

    fn json_response(description: &str, schema: &str) -> ResponseBuilder {
        ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build(),
        )
    }

    fn body(schema: &str) -> utoipa::openapi::request_body::RequestBody {
        RequestBodyBuilder::new()
            .required(Some(Required::True))
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(schema)))
                    .build(),
            )
            .build()
    }

    fn not_found() -> ResponseBuilder {
        ResponseBuilder::new().description("`not_found`.")
    }

    fn list_operation(&self) -> utoipa::openapi::path::Operation {
        let [_, _, _, page] = &self.names;
        self.operation(
            &format!("list_{}", self.r.plural),
            format!("List {}", self.r.plural.replace('_', " ")),
            Some("Oldest first, a page at a time.".to_owned()),
            self.r.read_role,
        )
        .parameters(Some(PageQuery::into_params(|| Some(ParameterIn::Query))))
        .response("200", Self::json_response("A page.", page))
        .response(
            "422",
            ResponseBuilder::new()
                .description("`validation_failed`: a query parameter is not acceptable."),
        )
        .build()
    }

    fn create_operation(&self) -> utoipa::openapi::path::Operation {
        let [item, new, _, _] = &self.names;
        let singular = self.r.singular.replace('_', " ");
        let description = self.r.meter.map(|m| {
            format!(
                "Counted by the {} meter `{}`: 402 when the plan's limit is reached.",
                if m.kind() == MeterKind::Gauge {
                    "gauge"
                } else {
                    "per-cycle"
                },
                m.name()
            )
        });
        let replayed = HeaderBuilder::new()
            .schema(String::schema())
            .description(Some(
                "`true` when this is the stored answer to an earlier request with the same key.",
            ))
            .build();
        let mut op = self
            .operation(
                &format!("create_{}", self.r.singular),
                format!("Create {}", article(&singular)),
                description,
                Some(self.r.write_role),
            )
            .parameters(Some(
                crate::http::openapi::IdempotencyKeyHeader::into_params(|| None),
            ))
            .request_body(Some(Self::body(new)))
            .response(
                "201",
                Self::json_response(&format!("The {singular}."), item)
                    .header("Idempotent-Replayed", replayed),
            )
            .response(
                "400",
                ResponseBuilder::new()
                    .description("`invalid_idempotency_key`, or a body that is not JSON."),
            )
            .response(
                "422",
                ResponseBuilder::new().description(
                    "`validation_failed`, `invalid_body`, or `idempotency_key_reused`.",
                ),
            );
        if self.r.meter.is_some() {
            op = op.response(
                "402",
                ResponseBuilder::new().description("`quota_exceeded` or `no_active_subscription`."),
            );
        }
        op.build()
    }

    fn get_operation(&self) -> utoipa::openapi::path::Operation {
        let [item, _, _, _] = &self.names;
        let singular = self.r.singular.replace('_', " ");
        self.operation(
            &format!("get_{}", self.r.singular),
            capitalized(&article(&singular)),
            None,
            self.r.read_role,
        )
        .parameter(self.id_parameter())
        .response(
            "200",
            Self::json_response(&format!("The {singular}."), item),
        )
        .response("404", Self::not_found())
        .build()
    }

    fn update_operation(&self) -> utoipa::openapi::path::Operation {
        let [item, _, change, _] = &self.names;
        let singular = self.r.singular.replace('_', " ");
        self.operation(
            &format!("update_{}", self.r.singular),
            format!("Change {}", article(&singular)),
            Some("What is absent stays.".to_owned()),
            Some(self.r.write_role),
        )
        .parameter(self.id_parameter())
        .request_body(Some(Self::body(change)))
        .response(
            "200",
            Self::json_response(&format!("The {singular} after the change."), item),
        )
        .response("404", Self::not_found())
        .build()
    }

    fn delete_operation(&self) -> utoipa::openapi::path::Operation {
        let singular = self.r.singular.replace('_', " ");
        let mut what = match self.r.deletion {
            Deletion::Soft => {
                "It is kept, hidden, so what refers to it keeps its history.".to_owned()
            }
            Deletion::Hard => "It is deleted for good.".to_owned(),
        };
        if let Some(meter) = self.r.meter.filter(|m| m.kind() == MeterKind::Gauge) {
            what.push_str(&format!(" The `{}` meter goes down by one.", meter.name()));
        }
        self.operation(
            &format!("delete_{}", self.r.singular),
            format!("Delete {}", article(&singular)),
            Some(what),
            Some(self.r.delete_role),
        )
        .parameter(self.id_parameter())
        .response("204", ResponseBuilder::new().description("Deleted."))
        .response("404", Self::not_found())
        .build()
    }
}

/// `application` → `Application`, `api_client` → `ApiClient`.
fn pascal(snake: &str) -> String {
    snake.split('_').map(capitalized).collect()
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn article(noun: &str) -> String {
    let vowel = noun.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {noun}", if vowel { "an" } else { "a" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn projects() -> Spec {
        Spec::new(
            Resource::new("projects", "project")
                .field(Field::text("name").chars(1, 10))
                .field(Field::integer("priority").range(0, 9).optional())
                .field(Field::boolean("archived").optional()),
        )
    }

    fn codes(result: Result<Values, Vec<FieldError>>) -> Vec<(String, &'static str)> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn the_sql_is_written_once_from_the_fields() {
        let spec = projects();
        assert_eq!(
            spec.get,
            "SELECT id, name, priority, archived, created_at, updated_at FROM projects \
             WHERE id = $1 AND business_id = $2 AND deleted_at IS NULL"
        );
        assert_eq!(
            spec.insert,
            "INSERT INTO projects (id, business_id, name, priority, archived, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)"
        );
        assert_eq!(
            spec.update,
            "UPDATE projects SET name = $3, priority = $4, archived = $5, updated_at = $6 \
             WHERE id = $1 AND business_id = $2 AND deleted_at IS NULL"
        );
        assert_eq!(spec.names[3], "ProjectPage");
    }

    #[test]
    fn bodies_are_checked_field_by_field_and_all_problems_reported() {
        let spec = projects();
        let body = |v: Value| v.as_object().cloned().unwrap_or_default();
        let ok = spec.parse(&body(serde_json::json!({"name": "  Apollo "})), true);
        let values = ok.expect("a valid body");
        assert_eq!(values.text("name"), Some("Apollo"));
        assert_eq!(values.integer("priority"), None);
        assert_eq!(
            codes(spec.parse(
                &body(serde_json::json!({"priority": 10, "colour": "red", "archived": "no"})),
                true
            )),
            vec![
                ("colour".to_owned(), "unknown_field"),
                ("name".to_owned(), "required"),
                ("priority".to_owned(), "out_of_range"),
                ("archived".to_owned(), "invalid_type"),
            ]
        );
        assert_eq!(
            codes(spec.parse(&body(serde_json::json!({"name": "x".repeat(11)})), true)),
            vec![("name".to_owned(), "too_long")]
        );
        assert_eq!(
            codes(spec.parse(&body(serde_json::json!({"name": "a\u{200b}b"})), true)),
            vec![("name".to_owned(), "invalid_characters")]
        );
        // A change names only what changes; a required field cannot be set to null.
        let change = spec
            .parse(&body(serde_json::json!({"priority": null})), false)
            .expect("a valid change");
        assert_eq!(change.0.len(), 1);
        assert_eq!(
            codes(spec.parse(&body(serde_json::json!({"name": null})), false)),
            vec![("name".to_owned(), "required")]
        );
    }

    #[test]
    fn a_declaration_with_unsafe_or_reserved_names_is_refused() {
        assert!(
            Resource::new("projects", "project")
                .field(Field::text("name"))
                .check()
                .is_ok()
        );
        assert!(Resource::new("projects; drop", "project").check().is_err());
        assert!(
            Resource::new("projects", "project")
                .field(Field::text("id"))
                .check()
                .is_err()
        );
        assert!(
            Resource::new("projects", "project")
                .field(Field::text("name"))
                .field(Field::integer("name"))
                .check()
                .is_err()
        );
    }
}
