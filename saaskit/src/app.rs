//! The application: shared state every request and job sees, and the server that runs it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::accounts::hashing::PasswordHasher;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::db::Db;
use crate::mail::Mailer;
use crate::product::Products;

/// Shared state, behind an `Arc` in every handler.
pub struct App {
    pub config: Config,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub hasher: PasswordHasher,
    pub mailer: Mailer,
    /// Seals the secrets the database must keep readable (see [`crate::seal`]).
    pub sealer: crate::seal::Sealer,
    /// Woken when this replica queues mail, so the worker sends it at once.
    pub mail_queued: tokio::sync::Notify,
    pub metrics: crate::metrics::Metrics,
    pub auth_cache: crate::accounts::cache::AuthCache,
    /// Whether this process's mail worker loop is running (for `/readyz`).
    pub mail_worker_running: std::sync::atomic::AtomicBool,
    /// Work a request answered before doing (so that its timing tells nothing): a graceful
    /// shutdown waits for it.
    pub background: tokio_util::task::TaskTracker,
    /// The batching writer for metered rows on SQLite, started on first use.
    pub sqlite_writer: crate::db::writer::WriterSlot,
    /// The dashboard's figures, read for many businesses at once (see [`crate::db::batch`]).
    pub dashboard_reads:
        crate::db::batch::BatcherSlot<crate::metering::FiguresOf, crate::metering::Figures>,
    /// saaskit and the products registered on it: their meters, routes and migrations.
    pub products: Arc<Products>,
    /// `/api/v1/openapi.json` as served, made on first request.
    pub openapi_document: std::sync::OnceLock<axum::body::Bytes>,
    /// The payment provider, when one is configured (see [`crate::payments`]).
    pub payments: Option<crate::payments::Payments>,
    /// The identity providers people may sign in with (see [`crate::oidc`]).
    pub identity_providers: crate::oidc::Providers,
}

pub type AppState = Arc<App>;

impl App {
    /// Waits until the work answered before it was done (see [`App::background`]) has finished.
    pub async fn background_idle(&self) {
        self.background.close();
        self.background.wait().await;
        self.background.reopen();
    }

    /// Connects to the configured database and applies pending migrations, saaskit's and the
    /// products'.
    pub async fn connect(config: Config, products: Arc<Products>) -> anyhow::Result<AppState> {
        config.validate()?;
        let db = Db::connect(&config.database_url, config.database_max_connections).await?;
        products.migrate(&db).await?;
        Self::with_db(config, db, Arc::new(SystemClock), products)
    }

    /// Builds the state around an existing (migrated) database and clock: for tests and for
    /// embedding saaskit in a larger program.
    pub fn with_db(
        config: Config,
        db: Db,
        clock: Arc<dyn Clock>,
        products: Arc<Products>,
    ) -> anyhow::Result<AppState> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let hasher = PasswordHasher::new(config.hash_concurrency.unwrap_or(cores));
        let sealer = crate::seal::Sealer::from_config(&config)?;
        let mailer = Mailer::from_config(&config, sealer.clone())?;
        let auth_cache = crate::accounts::cache::AuthCache::new(config.auth_cache_ttl_ms);
        let payments = crate::payments::Payments::from_config(&config)?;
        let identity_providers = crate::oidc::Providers::from_config(&config)?;
        Ok(Arc::new(App {
            config,
            db,
            clock,
            hasher,
            mailer,
            sealer,
            mail_queued: tokio::sync::Notify::new(),
            metrics: crate::metrics::Metrics::default(),
            auth_cache,
            mail_worker_running: std::sync::atomic::AtomicBool::new(false),
            background: tokio_util::task::TaskTracker::new(),
            sqlite_writer: crate::db::writer::WriterSlot::default(),
            dashboard_reads: crate::db::batch::BatcherSlot::default(),
            products,
            openapi_document: std::sync::OnceLock::new(),
            payments,
            identity_providers,
        }))
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight finish
/// (up to the configured timeout). Connections are held to the configured header-read and
/// keep-alive timeouts and cap (see [`crate::server`]).
pub async fn serve(
    app: AppState,
    router: axum::Router,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = crate::server::Limits::from_config(&app.config);
    tracing::info!(?limits, "serving connections");
    crate::server::serve(listener, router, limits, async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
    })
    .await;
    Ok(())
}

/// Runs the background jobs (the mail worker) and the server until `shutdown` completes; then
/// the server drains and the jobs stop between two pieces of work.
pub async fn run(
    app: AppState,
    router: axum::Router,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Compute the decoy hash now, so the first login for an unknown email costs no more than
    // any other.
    let warm = app.clone();
    tokio::spawn(async move {
        if let Err(err) = warm.hasher.verify_decoy("").await {
            tracing::warn!(
                error = format!("{err:#}"),
                "could not prepare the decoy hash"
            );
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = app.config.metrics_bind {
        let metrics_listener = TcpListener::bind(addr).await.with_context(|| {
            format!("binding the metrics address {addr} (SAASKIT_METRICS_BIND)")
        })?;
        tracing::info!(%addr, "metrics served without authentication on a separate address");
        let metrics_app = crate::http::health::metrics_router(app.clone());
        let limits = crate::server::Limits {
            max_connections: crate::server::METRICS_MAX_CONNECTIONS,
            ..crate::server::Limits::from_config(&app.config)
        };
        let mut stop = stop_rx.clone();
        tokio::spawn(crate::server::serve(
            metrics_listener,
            metrics_app,
            limits,
            async move {
                let _ = stop.changed().await;
            },
        ));
    }
    let mail_worker = tokio::spawn(crate::jobs::mail::run(app.clone(), stop_rx.clone()));
    let backups = tokio::spawn(crate::jobs::backup::run(app.clone(), stop_rx.clone()));
    let webhooks = tokio::spawn(crate::jobs::webhooks::run(app.clone(), stop_rx.clone()));
    let changes = tokio::spawn(crate::db::changes::run(app.db.clone(), stop_rx.clone()));
    let renewals = tokio::spawn(crate::jobs::renew::run(app.clone(), stop_rx));
    let served = serve(app.clone(), router, listener, async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    // A worker mid-send finishes that message (SMTP has its own timeout) and a sweep finishes the
    // subscription it is on; never wait forever.
    let jobs = async {
        app.background.close();
        app.background.wait().await;
        let _ = mail_worker.await;
        let _ = renewals.await;
        let _ = backups.await;
        let _ = webhooks.await;
        let _ = changes.await;
    };
    if tokio::time::timeout(Duration::from_secs(20), jobs)
        .await
        .is_err()
    {
        tracing::warn!("background jobs did not stop in time");
    }
    app.db.close().await;
    served
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
