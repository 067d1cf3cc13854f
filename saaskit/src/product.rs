//! A product built on saaskit: one value that brings everything the product adds (its routes,
//! meters, migrations, OpenAPI tags and the limits it gives saaskit's plans) and is registered
//! in one line:
//!
//! ```no_run
//! # fn my_product() -> saaskit::product::Product { saaskit::product::Product::new("mine") }
//! fn main() -> std::process::ExitCode {
//!     saaskit::cli::main(saaskit::product::Products::new().with(my_product()))
//! }
//! ```
//!
//! The router, the OpenAPI document, the list of paths the authorization matrix checks, the
//! meter registry and the migrations all derive from the registered [`Products`]; saaskit's own
//! modules never name a product.

use anyhow::Context as _;
use utoipa::openapi::tag::TagBuilder;

use crate::db::{Db, Migrations};
use crate::http::Route;
use crate::metering::{Meter, MeterKind, Meters};

/// What one product adds to saaskit. Build it with [`Product::new`] and the methods below.
pub struct Product {
    name: String,
    title: Option<String>,
    description: Option<String>,
    routes: Vec<Route>,
    meters: Vec<(String, MeterKind)>,
    migrations: Option<Migrations>,
    tags: Vec<(String, String)>,
    default_limits: Vec<(String, String, i64)>,
    pages: Vec<axum::Router<crate::app::AppState>>,
    nav: Vec<crate::web::NavLink>,
    event_types: Vec<crate::webhooks::EventType>,
}

impl Product {
    /// A product named `name`: a short lowercase identifier (`a-z`, `0-9`, `_`), which names
    /// its migrations' bookkeeping table (`_sqlx_migrations_<name>`).
    pub fn new(name: &str) -> Product {
        Product {
            name: name.to_owned(),
            title: None,
            description: None,
            routes: Vec::new(),
            meters: Vec::new(),
            migrations: None,
            tags: Vec::new(),
            default_limits: Vec::new(),
            pages: Vec::new(),
            nav: Vec::new(),
            event_types: Vec::new(),
        }
    }

    /// The OpenAPI document's title (saaskit's is `saaskit`).
    pub fn title(mut self, title: &str) -> Product {
        self.title = Some(title.to_owned());
        self
    }

    /// A paragraph added to the OpenAPI document's description.
    pub fn description(mut self, description: &str) -> Product {
        self.description = Some(description.to_owned());
        self
    }

    /// Routes served under `/api/v1`, beside saaskit's: make each with
    /// `utoipa_axum::routes!(handler, …)`.
    pub fn routes(mut self, routes: impl IntoIterator<Item = Route>) -> Product {
        self.routes.extend(routes);
        self
    }

    /// A resource declared with the toolkit ([`crate::resource::Resource`]): its routes, and
    /// its meter declared. Panics when the declaration is malformed (a programming error).
    pub fn resource(self, resource: crate::resource::Resource) -> Product {
        if let Err(err) = resource.check() {
            panic!("product {}: {err:#}", self.name);
        }
        let product = match resource.metered_by() {
            Some(meter) => self.meter(meter),
            None => self,
        };
        let events = resource.event_types();
        let (routes, pages, link) = resource.into_parts();
        let product = events.into_iter().fold(product, |p, e| p.event_type(e));
        product
            .routes(routes)
            .pages(pages)
            .nav(&link.label, &link.path)
    }

    /// Pages served at the site root beside saaskit's, with the same protections: build them
    /// with [`crate::web`] ([`crate::web::session::SignedIn`] for a person's session,
    /// [`crate::web::session::Submitted`] for a form, [`crate::web::page`] to show your
    /// template inside the layout).
    pub fn pages(mut self, pages: axum::Router<crate::app::AppState>) -> Product {
        self.pages.push(pages);
        self
    }

    /// An entry of the navigation, after saaskit's, for a page of the product.
    pub fn nav(mut self, label: &str, path: &str) -> Product {
        self.nav.push(crate::web::NavLink {
            label: label.to_owned(),
            path: path.to_owned(),
        });
        self
    }

    /// A webhook event type the product emits (with [`crate::webhooks::emit`]), listed in the
    /// catalogue endpoints subscribe from. `data` is a JSON Schema of the event's data.
    pub fn event_type(mut self, event: crate::webhooks::EventType) -> Product {
        self.event_types.push(event);
        self
    }

    /// A meter the product's resources consume. Gauges must be declared (a meter nobody
    /// declared counts per cycle, so that `POST /api/v1/usage` may name any); declare per-cycle
    /// meters too, so the registry knows them.
    pub fn meter(mut self, meter: Meter<'_>) -> Product {
        self.meters.push((meter.name().to_owned(), meter.kind()));
        self
    }

    /// The product's migrations, one folder per database with the same version numbers, as
    /// `sqlx::migrate!("./migrations/sqlite")` and `sqlx::migrate!("./migrations/postgres")`
    /// give them. They run after saaskit's, and are tracked apart from them.
    pub fn migrations(
        mut self,
        sqlite: sqlx::migrate::Migrator,
        postgres: sqlx::migrate::Migrator,
    ) -> Product {
        self.migrations = Some(Migrations::new(
            format!("_sqlx_migrations_{}", self.name),
            sqlite,
            postgres,
        ));
        self
    }

    /// An OpenAPI tag the product's operations use, with its description.
    pub fn tag(mut self, name: &str, description: &str) -> Product {
        self.tags.push((name.to_owned(), description.to_owned()));
        self
    }

    /// The limit `plan` (a plan's code) gets for `meter`, set once, when the product is first
    /// migrated onto a database where the plan exists and does not limit the meter yet. Staff
    /// may change it afterwards; it is never set again.
    pub fn default_limit(mut self, plan: &str, meter: Meter<'_>, limit: i64) -> Product {
        self.default_limits
            .push((plan.to_owned(), meter.name().to_owned(), limit));
        self
    }

    fn check(&self) -> anyhow::Result<()> {
        let name_ok = crate::domain::is_identifier(&self.name) && self.name.len() <= 40;
        anyhow::ensure!(
            name_ok,
            "a product's name is a short lowercase identifier (got {:?})",
            self.name
        );
        for (meter, _) in &self.meters {
            anyhow::ensure!(
                crate::metering::is_meter_name(meter),
                "product {}: {meter:?} is not a meter name (a-z, 0-9, _)",
                self.name
            );
        }
        for (_, _, limit) in &self.default_limits {
            anyhow::ensure!(
                *limit >= 0,
                "product {}: a default limit is not negative",
                self.name
            );
        }
        Ok(())
    }
}

/// saaskit and the products registered on it: what a deployment serves. Assembled once at start;
/// the application keeps it (`App::products`).
#[derive(Default)]
pub struct Products {
    products: Vec<Product>,
    event_types: Vec<crate::webhooks::EventType>,
    meters: Meters,
    nav: std::sync::Arc<[crate::web::NavLink]>,
}

impl Products {
    /// Each product's name with its migrations, for those that have any.
    pub(crate) fn migration_sets(&self) -> impl Iterator<Item = (&str, &Migrations)> {
        self.products
            .iter()
            .filter_map(|p| Some((p.name.as_str(), p.migrations.as_ref()?)))
    }

    /// saaskit alone.
    pub fn new() -> Products {
        Products::default()
    }

    /// Adds `product`. Panics when the product is malformed (a bad name, a meter declared twice
    /// with different kinds): that is a programming error, found the first time it runs.
    pub fn with(self, product: Product) -> Products {
        self.try_with(product)
            .unwrap_or_else(|err| panic!("registering a product: {err:#}"))
    }

    /// [`Products::with`], answering an error instead of panicking.
    pub fn try_with(mut self, product: Product) -> anyhow::Result<Products> {
        product.check()?;
        anyhow::ensure!(
            self.products.iter().all(|p| p.name != product.name),
            "a product named {} is already registered",
            product.name
        );
        for (meter, kind) in &product.meters {
            self.meters
                .declare(meter, *kind)
                .with_context(|| format!("product {}", product.name))?;
        }
        for event in &product.event_types {
            anyhow::ensure!(
                crate::webhooks::BUILTIN
                    .iter()
                    .all(|(name, _, _)| *name != event.name)
                    && self.event_types.iter().all(|e| e.name != event.name),
                "product {}: the event type {} is already registered",
                product.name,
                event.name
            );
        }
        self.event_types.extend(product.event_types.iter().cloned());
        self.products.push(product);
        self.nav = self
            .products
            .iter()
            .flat_map(|p| p.nav.iter().cloned())
            .collect();
        Ok(self)
    }

    /// The products' pages, served at the site root beside saaskit's.
    pub fn pages(&self) -> axum::Router<crate::app::AppState> {
        self.products
            .iter()
            .flat_map(|p| p.pages.iter().cloned())
            .fold(axum::Router::new(), axum::Router::merge)
    }

    /// The products' navigation entries, in registration order.
    pub fn nav(&self) -> std::sync::Arc<[crate::web::NavLink]> {
        self.nav.clone()
    }

    /// The webhook event types the products emit (saaskit's own are in
    /// [`crate::webhooks::BUILTIN`]).
    pub fn event_types(&self) -> &[crate::webhooks::EventType] {
        &self.event_types
    }

    /// Every meter saaskit and the products declare.
    pub fn meters(&self) -> &Meters {
        &self.meters
    }

    /// The registered products' routes, nested under `/api/v1` beside saaskit's.
    pub fn routes(&self) -> Vec<Route> {
        self.products
            .iter()
            .flat_map(|p| p.routes.iter().cloned())
            .collect()
    }

    /// Sets the products' title, description and tags on the OpenAPI document.
    pub fn describe(&self, document: &mut utoipa::openapi::OpenApi) {
        for product in &self.products {
            if let Some(title) = &product.title {
                document.info.title.clone_from(title);
            }
            if let Some(extra) = &product.description {
                let description = document.info.description.get_or_insert_default();
                description.push_str("\n\n");
                description.push_str(extra);
            }
            let tags = document.tags.get_or_insert_default();
            for (name, description) in &product.tags {
                tags.push(
                    TagBuilder::new()
                        .name(name)
                        .description(Some(description))
                        .build(),
                );
            }
        }
    }

    /// Applies saaskit's pending migrations, then each product's, then the products' default
    /// limits that were never set.
    pub async fn migrate(&self, db: &Db) -> anyhow::Result<()> {
        db.migrate().await?;
        for product in &self.products {
            if let Some(migrations) = &product.migrations {
                db.migrate_with(migrations)
                    .await
                    .with_context(|| format!("applying the migrations of {}", product.name))?;
            }
        }
        let defaults: Vec<(String, String, i64)> = self
            .products
            .iter()
            .flat_map(|p| p.default_limits.iter().cloned())
            .collect();
        if !defaults.is_empty() {
            crate::billing::admin::apply_default_limits(db, &defaults)
                .await
                .context("setting the products' default plan limits")?;
        }
        Ok(())
    }

    /// Whether saaskit's and every product's migrations have been applied.
    pub async fn migrations_applied(&self, db: &Db) -> Result<bool, sqlx::Error> {
        if !db.migrations_applied().await? {
            return Ok(false);
        }
        for product in &self.products {
            if let Some(migrations) = &product.migrations
                && !db.applied(migrations).await?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl std::fmt::Debug for Products {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.products.iter().map(|p| &p.name))
            .finish()
    }
}
