//! The renewal loop: one sweep every `SAASKIT_RENEW_EVERY` seconds, and the forgetting of
//! expired idempotency keys. Every replica may run it; the sweep itself makes concurrent runs
//! safe.

use std::time::Duration;

use tokio::sync::watch;

use crate::app::AppState;
use crate::billing::sweep;

pub async fn run(app: AppState, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(app.config.renew_every.max(1));
    tracing::info!(every_secs = every.as_secs(), "renewal sweep started");
    loop {
        if *stop.borrow() {
            break;
        }
        match sweep::sweep(&app, app.clock.now()).await {
            Ok(report) => {
                app.metrics.renewals.inc_by(report.renewals);
            }
            Err(err) => tracing::error!(error = format!("{err:#}"), "renewal sweep failed"),
        }
        if let Err(err) = crate::metering::idempotency::purge_expired(&app).await {
            tracing::error!(
                error = format!("{err:#}"),
                "purging idempotency keys failed"
            );
        }
        if let Err(err) = crate::ratelimit::purge(&app).await {
            tracing::error!(
                error = format!("{err:#}"),
                "purging rate-limit windows failed"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
    tracing::info!("renewal sweep stopped");
}
