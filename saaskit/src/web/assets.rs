//! The pages' assets (one stylesheet, one small script, `/billing`'s card form script and the
//! passkeys script), embedded in the binary and served
//! under names that carry a digest of their content: a new build with a changed file gets a
//! new name, so browsers may keep each one for a year without ever showing a stale one.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Asset {
    /// `/assets/<stem>.<digest>.<ext>`.
    pub path: String,
    content_type: &'static str,
    bytes: &'static [u8],
}

impl Asset {
    fn new(stem: &str, ext: &str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
        let digest = Sha256::digest(bytes);
        let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Asset {
            path: format!("/assets/{stem}.{short}.{ext}"),
            content_type,
            bytes,
        }
    }
}

pub static STYLESHEET: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "app",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    )
});

pub static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "app",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    )
});

/// `/billing`'s script: the card form through Stripe.js, and 3-D Secure for a top-up.
pub static BILLING_SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "billing",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/billing.js"),
    )
});

/// The passkeys page's and `/login`'s script: asking the browser's authenticator.
pub static PASSKEYS_SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "passkeys",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/passkeys.js"),
    )
});

/// `GET /assets/{name}`: an asset by its digest-bearing name; any other name is not there.
pub async fn get_asset(Path(name): Path<String>) -> Response {
    let path = format!("/assets/{name}");
    let Some(asset) = [&*STYLESHEET, &*SCRIPT, &*BILLING_SCRIPT, &*PASSKEYS_SCRIPT]
        .into_iter()
        .find(|a| a.path == path)
    else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        asset.bytes,
    )
        .into_response()
}
