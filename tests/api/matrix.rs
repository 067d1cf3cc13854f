//! The authorization matrix: every route the server answers, with the status each kind of caller
//! gets for a request that is otherwise valid. A route the server answers that the table does
//! not list fails the test, and so does a row for a route the server does not answer.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

/// The kinds of caller, in the order of the table's columns.
const CALLERS: [&str; 11] = [
    "anonymous",            // no Authorization header
    "owner",                // a session of the owner of the business the fixtures belong to
    "admin",                // a session of an admin of that business (an accepted invitation)
    "member",               // a session of a member of that business (an accepted invitation)
    "bot",                  // a bot member of that business created with scopes ["dashboard"]
    "sdk_key",              // an API key of that business
    "revoked_key",          // an API key revoked with DELETE /api/v1/api-keys/{id}
    "expired_token",        // an owner session whose lifetime has passed (checked last)
    "other_business",       // a session of the owner of another business
    "deactivated_user",     // a session of a member whom staff deactivated
    "deactivated_business", // a session of the owner of a business that staff deactivated
];
const OWNER: usize = 1;
const ADMIN: usize = 2;
const MEMBER: usize = 3;
const BOT: usize = 4;
const SDK_KEY: usize = 5;
const REVOKED_KEY: usize = 6;
const EXPIRED_TOKEN: usize = 7;
const OTHER_BUSINESS: usize = 8;
const DEACTIVATED_USER: usize = 9;
const DEACTIVATED_BUSINESS: usize = 10;

/// One route and the status each caller gets, in the order of [`CALLERS`].
struct Row {
    method: &'static str,
    path: &'static str,
    expect: [u16; 11],
}

macro_rules! row {
    ($method:literal, $path:literal, $expect:expr) => {
        Row {
            method: $method,
            path: $path,
            expect: $expect,
        }
    };
}

/// Columns: anonymous, owner, admin, member, bot, sdk_key, revoked_key, expired_token,
/// other_business, deactivated_user, deactivated_business.
///
/// Ids in paths (and `application_id` in a recording) belong to the owner's business, so
/// `other_business` gets 404 for them (422 for the recording: the id is in the body). Routes
/// without ids act on the caller's own business, so `other_business` succeeds there.
/// Public routes ignore the token: every column is the same.
#[rustfmt::skip]
fn table() -> Vec<Row> {
    vec![
        // Public.                                          anon  own   adm   mem   bot   sdk   rvk   exp   oth   dusr  dbiz
        row!("GET",    "/healthz",                            [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row!("GET",    "/api/v1/healthz",                     [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row!("GET",    "/api/v1/openapi.json",                [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row!("GET",    "/docs",                               [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        // Tests serve without the background jobs, so readiness reports the mail worker down.
        row!("GET",    "/readyz",                             [503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503]),
        // No SAASKIT_METRICS_TOKEN in tests: the endpoint does not exist for anyone.
        row!("GET",    "/metrics",                            [404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404]),
        row!("GET",    "/api/v1/plans",                       [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        // Stripe's events: checked by signature, not by token; no secret is configured here.
        row!("POST",   "/webhooks/stripe",                    [409, 409, 409, 409, 409, 409, 409, 409, 409, 409, 409]),
        row!("POST",   "/api/v1/signup",                      [201, 201, 201, 201, 201, 201, 201, 201, 201, 201, 201]),
        row!("POST",   "/api/v1/login",                       [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row!("POST",   "/api/v1/password/reset",              [202, 202, 202, 202, 202, 202, 202, 202, 202, 202, 202]),
        // An unknown token: 401 `invalid_mfa_token`.
        row!("POST",   "/api/v1/login/mfa",                   [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
        row!("POST",   "/api/v1/login/magic-link",            [202, 202, 202, 202, 202, 202, 202, 202, 202, 202, 202]),
        row!("POST",   "/api/v1/login/passkey/start",         [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        // A ceremony that does not exist: 410 `ceremony_expired`.
        row!("POST",   "/api/v1/login/passkey/finish",        [410, 410, 410, 410, 410, 410, 410, 410, 410, 410, 410]),
        // An unknown key: 404 `key_not_found`.
        row!("POST",   "/api/v1/login/magic-link/confirm",    [404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404]),
        // An unknown key: 404 `key_not_found`.
        row!("POST",   "/api/v1/password/reset/confirm",      [404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404]),
        // An unknown key: 404 `key_not_found`.
        row!("POST",   "/api/v1/email/verify",                [404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404]),
        row!("GET",    "/api/v1/invitations/{invitation}",           [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row!("POST",   "/api/v1/api-keys/revoke-leaked",      [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row!("POST",   "/saas/signup",                        [201, 201, 201, 201, 201, 201, 201, 201, 201, 201, 201]),
        row!("POST",   "/saas/login",                         [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        row!("POST",   "/saas/passwd/reset",                  [202, 202, 202, 202, 202, 202, 202, 202, 202, 202, 202]),
        row!("POST",   "/saas/passwd/reset/cnfrm",            [404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404]),
        row!("GET",    "/saas/signup/prefill",                [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),

        // Dashboard reads: `dashboard:read`, any member.    anon  own   adm   mem   bot   sdk   rvk   exp   oth   dusr  dbiz
        row!("GET",    "/api/v1/me",                          [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        row!("GET",    "/api/v1/subscription",                [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        row!("GET",    "/api/v1/usage",                       [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        row!("GET",    "/api/v1/applications",                [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        row!("GET",    "/api/v1/applications/{id}",           [401, 200, 200, 200, 200, 403, 401, 401, 404, 401, 401]),
        row!("GET",    "/api/v1/recordings",                  [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        row!("GET",    "/saas/me",                            [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        row!("GET",    "/api/v1/sessions",                    [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        // The id is a session of the owner: only the owner may end it.
        row!("DELETE", "/api/v1/sessions/{id}",               [401, 204, 404, 404, 404, 403, 401, 401, 404, 401, 401]),
        // End the caller's other sessions: run last for each caller (the password is changed
        // to itself, so logging in with it still works).
        row!("DELETE", "/api/v1/sessions",                    [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        // Bots have no password.
        row!("POST",   "/api/v1/password/change",             [401, 200, 200, 200, 403, 403, 401, 401, 200, 401, 401]),
        row!("GET",    "/api/v1/businesses",                  [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        row!("GET",    "/api/v1/business",                    [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        // Second factors are people's: bots have none.
        row!("GET",    "/api/v1/mfa",                         [401, 200, 200, 200, 403, 403, 401, 401, 200, 401, 401]),
        row!("GET",    "/api/v1/identities",                  [401, 200, 200, 200, 403, 403, 401, 401, 200, 401, 401]),
        // An identity linked to the owner (who also has a password, so it may go).
        row!("DELETE", "/api/v1/identities/{id}",             [401, 204, 404, 404, 403, 403, 401, 401, 404, 401, 401]),
        row!("POST",   "/api/v1/mfa/totp/setup",              [401, 200, 200, 200, 403, 403, 401, 401, 200, 401, 401]),
        // A wrong code for the set-up just made.
        row!("POST",   "/api/v1/mfa/totp/confirm",            [401, 422, 422, 422, 403, 403, 401, 401, 422, 401, 401]),
        // With a wrong password (the matrix must not change its callers' sign-in).
        row!("DELETE", "/api/v1/mfa/totp",                    [401, 422, 422, 422, 403, 403, 401, 401, 422, 401, 401]),
        row!("POST",   "/api/v1/mfa/recovery-codes",          [401, 422, 422, 422, 403, 403, 401, 401, 422, 401, 401]),
        row!("GET",    "/api/v1/passkeys",                    [401, 200, 200, 200, 403, 403, 401, 401, 200, 401, 401]),
        row!("POST",   "/api/v1/passkeys/register/start",     [401, 200, 200, 200, 403, 403, 401, 401, 200, 401, 401]),
        // A ceremony that does not exist.
        row!("POST",   "/api/v1/passkeys/register/finish",    [401, 410, 410, 410, 403, 403, 401, 401, 410, 401, 401]),
        // The id is a passkey of the owner: only the owner may rename or remove it.
        row!("PATCH",  "/api/v1/passkeys/{id}",               [401, 200, 404, 404, 403, 403, 401, 401, 404, 401, 401]),
        row!("DELETE", "/api/v1/passkeys/{id}",               [401, 204, 404, 404, 403, 403, 401, 401, 404, 401, 401]),
        // To a business the caller does not belong to (switching ends the caller's session;
        // the switch itself is tested in tests/api/teams.rs).
        row!("POST",   "/api/v1/sessions/switch",             [401, 404, 404, 404, 403, 403, 401, 401, 404, 401, 401]),
        // With a wrong password: the matrix must not delete its callers (deletion is tested in
        // tests/api/teams.rs). Bots and API keys have no account to delete.
        row!("DELETE", "/api/v1/me",                          [401, 422, 422, 422, 403, 403, 401, 401, 422, 401, 401]),
        // Every person here is unverified (signed up or joined by invitation); bots and API
        // keys have no mailbox.
        row!("POST",   "/api/v1/email/verify/resend",         [401, 202, 202, 202, 403, 403, 401, 401, 202, 401, 401]),
        // Revokes the caller's own token: run last for each caller.
        row!("POST",   "/api/v1/logout",                      [401, 204, 204, 204, 204, 403, 401, 401, 204, 401, 401]),

        // Dashboard writes: `dashboard`, role as noted.      anon  own   adm   mem   bot   sdk   rvk   exp   oth   dusr  dbiz
        row!("POST",   "/api/v1/applications",                [401, 201, 201, 201, 201, 403, 401, 401, 201, 401, 401]),
        // Renaming: owners and admins.
        row!("PATCH",  "/api/v1/business",                    [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),
        row!("PATCH",  "/api/v1/applications/{id}",           [401, 200, 200, 200, 200, 403, 401, 401, 404, 401, 401]),
        row!("DELETE", "/api/v1/applications/{id}",           [401, 204, 204, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("POST",   "/api/v1/subscription/change",         [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),
        row!("POST",   "/api/v1/subscription/cancel",         [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),
        row!("POST",   "/api/v1/subscription/resume",         [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),
        row!("POST",   "/api/v1/invitations",                 [401, 201, 201, 403, 403, 403, 401, 401, 201, 401, 401]),
        row!("GET",    "/api/v1/invitations",                 [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),
        // `{invitation}` is the id of a pending invitation of the owner's business here.
        row!("DELETE", "/api/v1/invitations/{invitation}",           [401, 204, 204, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("POST",   "/api/v1/invitations/{invitation}/resend",    [401, 200, 200, 403, 403, 403, 401, 401, 404, 401, 401]),
        // Anyone may accept with the key; a caller who sends a token accepts as that account,
        // which must be a person's with the invited email (none of these callers is).
        row!("POST",   "/api/v1/invitations/{invitation}/accept",    [201, 403, 403, 403, 403, 403, 401, 401, 403, 401, 401]),
        row!("POST",   "/saas/invite",                        [401, 201, 201, 403, 403, 403, 401, 401, 201, 401, 401]),
        // API keys and bots: admin+ (the lists need only `dashboard:read`).
        row!("GET",    "/api/v1/api-keys",                    [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),
        row!("POST",   "/api/v1/api-keys",                    [401, 201, 201, 403, 403, 403, 401, 401, 201, 401, 401]),
        row!("DELETE", "/api/v1/api-keys/{id}",               [401, 204, 204, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("POST",   "/api/v1/api-keys/{id}/rotate",        [401, 200, 200, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("GET",    "/api/v1/bots",                        [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),
        row!("POST",   "/api/v1/bots",                        [401, 201, 201, 403, 403, 403, 401, 401, 201, 401, 401]),
        row!("DELETE", "/api/v1/bots/{id}",                   [401, 204, 204, 403, 403, 403, 401, 401, 404, 401, 401]),
        // Members: anyone reads the list; owners and admins change roles and remove.
        row!("GET",    "/api/v1/members",                     [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        row!("PATCH",  "/api/v1/members/{id}",                [401, 200, 200, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("DELETE", "/api/v1/members/{id}",                [401, 204, 204, 403, 403, 403, 401, 401, 404, 401, 401]),
        // Owners only. The owner is an admin afterwards: run late for each caller (before what ends
        // the caller's other sessions, which ends the fixtures' session too).
        row!("POST",   "/api/v1/members/{id}/transfer-ownership", [401, 200, 403, 403, 403, 403, 401, 401, 404, 401, 401]),
        // Owners and admins read their business's log.
        row!("GET",    "/api/v1/audit-log",                   [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),
        // Webhooks: owners and admins (the catalogue: any member).
        row!("GET",    "/api/v1/webhooks",                    [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),
        row!("POST",   "/api/v1/webhooks",                    [401, 201, 201, 403, 403, 403, 401, 401, 201, 401, 401]),
        row!("GET",    "/api/v1/webhooks/event-types",        [401, 200, 200, 200, 200, 403, 401, 401, 200, 401, 401]),
        row!("GET",    "/api/v1/webhooks/{id}",               [401, 200, 200, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("PATCH",  "/api/v1/webhooks/{id}",               [401, 200, 200, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("DELETE", "/api/v1/webhooks/{id}",               [401, 204, 204, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("POST",   "/api/v1/webhooks/{id}/rotate-secret", [401, 200, 200, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("POST",   "/api/v1/webhooks/{id}/test",          [401, 202, 202, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("GET",    "/api/v1/webhooks/{id}/deliveries",    [401, 200, 200, 403, 403, 403, 401, 401, 404, 401, 401]),
        row!("POST",   "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry", [401, 202, 202, 403, 403, 403, 401, 401, 404, 401, 401]),
        // Payments: owners and admins. The tests configure no payment provider, so whoever may
        // pay is told 409 `payments_not_configured`; reading works without one.
        row!("POST",   "/api/v1/billing/setup-intent",        [401, 409, 409, 403, 403, 403, 401, 401, 409, 401, 401]),
        row!("GET",    "/api/v1/billing/payment-method",      [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),
        row!("POST",   "/api/v1/billing/payment-method",      [401, 409, 409, 403, 403, 403, 401, 401, 409, 401, 401]),
        row!("DELETE", "/api/v1/billing/payment-method",      [401, 409, 409, 403, 403, 403, 401, 401, 409, 401, 401]),
        row!("POST",   "/api/v1/billing/top-up",              [401, 409, 409, 403, 403, 403, 401, 401, 409, 401, 401]),
        row!("GET",    "/api/v1/billing/payments",            [401, 200, 200, 403, 403, 403, 401, 401, 200, 401, 401]),

        // SDK: `sdk` (API keys; sessions and bots through `dashboard`).
        //                                                    anon  own   adm   mem   bot   sdk   rvk   exp   oth   dusr  dbiz
        row!("POST",   "/api/v1/recordings",                  [401, 201, 201, 201, 201, 201, 401, 401, 422, 401, 401]),
        row!("POST",   "/api/v1/usage",                       [401, 200, 200, 200, 200, 200, 401, 401, 200, 401, 401]),
        row!("GET",    "/api/v1/entitlements",                [401, 200, 200, 200, 200, 200, 401, 401, 200, 401, 401]),

        // Staff only; no caller here is staff.               anon  own   adm   mem   bot   sdk   rvk   exp   oth   dusr  dbiz
        row!("GET",    "/api/v1/admin/plans",                 [401, 403, 403, 403, 403, 403, 401, 401, 403, 401, 401]),
        row!("POST",   "/api/v1/admin/plans",                 [401, 403, 403, 403, 403, 403, 401, 401, 403, 401, 401]),
        row!("PATCH",  "/api/v1/admin/plans/{code}",          [401, 403, 403, 403, 403, 403, 401, 401, 403, 401, 401]),
        row!("POST",   "/api/v1/admin/plans/{code}/archive",  [401, 403, 403, 403, 403, 403, 401, 401, 403, 401, 401]),
        row!("GET",    "/api/v1/admin/businesses/{id}",       [401, 403, 403, 403, 403, 403, 401, 401, 403, 401, 401]),
        row!("POST",   "/api/v1/admin/businesses/{id}/plan",  [401, 403, 403, 403, 403, 403, 401, 401, 403, 401, 401]),
        row!("POST",   "/api/v1/admin/businesses/{id}/credits", [401, 403, 403, 403, 403, 403, 401, 401, 403, 401, 401]),
        row!("POST",   "/api/v1/admin/businesses/{id}/deactivate", [401, 403, 403, 403, 403, 403, 401, 401, 403, 401, 401]),
        row!("POST",   "/api/v1/admin/users/{id}/deactivate", [401, 403, 403, 403, 403, 403, 401, 401, 403, 401, 401]),
    ]
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("a valid method name")
}

/// A template with every `{placeholder}` replaced by a dummy value.
fn dummy_path(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "matrix-dummy"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every (method, template) the server routes: an anonymous request that is not answered 405.
async fn routed(app: &TestApp) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for template in saaskit::http::all_paths(&crate::helpers::products()) {
        let path = dummy_path(&template);
        for name in METHODS {
            let (status, _) = app.call(method(name), &path, None, None).await;
            if status != StatusCode::METHOD_NOT_ALLOWED {
                found.insert((name.to_owned(), template.clone()));
            }
        }
    }
    found
}

async fn assert_the_table_lists_every_route(app: &TestApp, rows: &[Row]) {
    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(listed.len(), rows.len(), "the matrix lists a route twice");
    let routed = routed(app).await;
    let show = |set: Vec<&(String, String)>| {
        set.iter()
            .map(|(m, p)| format!("  {m} {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let missing: Vec<_> = routed.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "routes the server answers that the authorization matrix (tests/api/matrix.rs) does not \
         list; add a row for each:\n{}",
        show(missing)
    );
    let unrouted: Vec<_> = listed.difference(&routed).collect();
    assert!(
        unrouted.is_empty(),
        "rows of the authorization matrix for routes the server does not answer:\n{}",
        show(unrouted)
    );
}

/// What the fixtures need: a session of the owner that no caller uses, and ids to point at.
struct World {
    /// An owner session of the main business, used only to prepare fixtures.
    setup: String,
    owner_email: String,
    /// A business and its owner, the targets of the staff-only routes (so nothing that matters
    /// breaks if one of them lets a non-staff caller through).
    victim_business: String,
    victim_user: String,
    counter: AtomicU32,
}

impl World {
    fn unique(&self, what: &str) -> String {
        format!("{what}{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    fn email(&self, what: &str) -> String {
        format!("{}@example.com", self.unique(what))
    }
}

/// A request that must succeed, for building fixtures; returns the answer.
async fn must(
    app: &TestApp,
    verb: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    want: StatusCode,
) -> Value {
    let (status, answer) = app.call(method(verb), path, token, body).await;
    assert_eq!(status, want, "fixture {verb} {path}: {answer}");
    answer
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in {v}"))
        .to_owned()
}

async fn login(app: &TestApp, email: &str) -> String {
    let body = json!({"email": email, "password": PASSWORD});
    token_of(
        &must(
            app,
            "POST",
            "/api/v1/login",
            None,
            Some(body),
            StatusCode::OK,
        )
        .await,
    )
}

/// Invites `email` with `role` to the setup session's business and accepts; the answer.
async fn join(app: &TestApp, setup: &str, email: &str, role: &str) -> Value {
    let key = invitation(app, setup, email, role).await;
    let body = json!({"password": PASSWORD, "first_name": "Grace", "last_name": "Hopper"});
    let path = format!("/api/v1/invitations/{key}/accept");
    must(app, "POST", &path, None, Some(body), StatusCode::CREATED).await
}

/// A new pending invitation of the setup session's business: its key.
async fn invitation(app: &TestApp, setup: &str, email: &str, role: &str) -> String {
    text(&invite(app, setup, email, role).await, "/key")
}

/// A new pending invitation of the setup session's business: the whole answer.
async fn invite(app: &TestApp, setup: &str, email: &str, role: &str) -> Value {
    let body = json!({"email": email, "role": role, "send_email": false});
    must(
        app,
        "POST",
        "/api/v1/invitations",
        Some(setup),
        Some(body),
        StatusCode::CREATED,
    )
    .await
}

async fn application(app: &TestApp, w: &World) -> String {
    let body = json!({"name": "Fixture app"});
    let created = must(
        app,
        "POST",
        "/api/v1/applications",
        Some(&w.setup),
        Some(body),
        StatusCode::CREATED,
    )
    .await;
    text(&created, "/id")
}

/// A new API key of the main business: (id, secret).
async fn api_key(app: &TestApp, setup: &str) -> (String, String) {
    let body = json!({"name": "Fixture key"});
    let key = must(
        app,
        "POST",
        "/api/v1/api-keys",
        Some(setup),
        Some(body),
        StatusCode::CREATED,
    )
    .await;
    (text(&key, "/id"), text(&key, "/key"))
}

/// A webhook endpoint of the main business: its one shared endpoint (the business may have
/// twenty), or a new one for a row that deletes it.
async fn webhook(app: &TestApp, w: &World, fresh: bool) -> String {
    if !fresh {
        let list = must(
            app,
            "GET",
            "/api/v1/webhooks",
            Some(&w.setup),
            None,
            StatusCode::OK,
        )
        .await;
        if let Some(id) = list["data"]
            .as_array()
            .and_then(|all| all.iter().find(|e| e["description"] == "shared"))
            .and_then(|e| e["id"].as_str())
        {
            return id.to_owned();
        }
    }
    let body = json!({
        "url": "https://hooks.example.com/matrix",
        "events": ["member.joined"],
        "description": if fresh { "fresh" } else { "shared" },
    });
    let created = must(
        app,
        "POST",
        "/api/v1/webhooks",
        Some(&w.setup),
        Some(body),
        StatusCode::CREATED,
    )
    .await;
    text(&created, "/id")
}

/// A new bot of the main business with `dashboard`: (member id, token).
async fn bot(app: &TestApp, setup: &str) -> (String, String) {
    let body = json!({"name": "Fixture bot", "scopes": ["dashboard"]});
    let bot = must(
        app,
        "POST",
        "/api/v1/bots",
        Some(setup),
        Some(body),
        StatusCode::CREATED,
    )
    .await;
    (text(&bot, "/id"), text(&bot, "/token"))
}

/// A new human member (role `member`) of the main business: their member id.
async fn human_member(app: &TestApp, w: &World) -> String {
    let email = w.email("member-fixture");
    let body = json!({"email": email, "role": "member", "send_email": false});
    let invitation = must(
        app,
        "POST",
        "/api/v1/invitations",
        Some(&w.setup),
        Some(body),
        StatusCode::CREATED,
    )
    .await;
    let accept = format!("/api/v1/invitations/{}/accept", text(&invitation, "/key"));
    let body = json!({"first_name": "Fix", "last_name": "Ture", "password": PASSWORD});
    must(app, "POST", &accept, None, Some(body), StatusCode::CREATED).await;
    let list = must(
        app,
        "GET",
        "/api/v1/members",
        Some(&w.setup),
        None,
        StatusCode::OK,
    )
    .await;
    list["data"]
        .as_array()
        .and_then(|members| members.iter().find(|m| m["email"] == email.as_str()))
        .and_then(|m| m["id"].as_str())
        .expect("the new member is listed")
        .to_owned()
}

/// Moves a business to the hidden `unlimited` plan (a new period starts now), so no quota
/// gets in the way of the many fixtures.
async fn make_unlimited(app: &TestApp, staff: &str, business: &str) {
    let path = format!("/api/v1/admin/businesses/{business}/plan");
    let body = json!({"plan": "unlimited"});
    must(app, "POST", &path, Some(staff), Some(body), StatusCode::OK).await;
}

/// The concrete path and body of an otherwise valid request to a route, with fresh fixtures
/// where a previous call would have used them up.
async fn prepare(app: &TestApp, w: &World, verb: &str, template: &str) -> (String, Option<Value>) {
    let plain = || (template.to_owned(), None);
    let with = |body: Value| (template.to_owned(), Some(body));
    let at = |id: &str| template.replace("{id}", id).replace("{invitation}", id);
    match (verb, template) {
        ("POST", "/api/v1/signup") => with(json!({
            "business": {"name": "Matrix"},
            "email": w.email("signup"),
            "first_name": "Ada",
            "last_name": "Lovelace",
            "password": PASSWORD,
        })),
        ("POST", "/saas/signup") => with(json!({
            "business": {"name": "Matrix"},
            "email": w.email("compat-signup"),
            "first_name": "Ada",
            "last_name": "Lovelace",
            "password1": PASSWORD,
            "password2": PASSWORD,
        })),
        ("POST", "/api/v1/login" | "/saas/login") => {
            with(json!({"email": w.owner_email, "password": PASSWORD}))
        }
        ("POST", "/api/v1/password/reset" | "/saas/passwd/reset") => {
            with(json!({"email": w.owner_email}))
        }
        ("POST", "/api/v1/email/verify") => with(json!({"key": "no-such-key"})),
        ("POST", "/api/v1/password/reset/confirm") => {
            with(json!({"key": "no-such-key", "password": "a brand new passphrase"}))
        }
        ("POST", "/saas/passwd/reset/cnfrm") => with(json!({
            "activation_key": "no-such-key",
            "password1": "a brand new passphrase",
            "password2": "a brand new passphrase",
        })),
        ("DELETE", "/api/v1/invitations/{invitation}")
        | ("POST", "/api/v1/invitations/{invitation}/resend") => {
            let inv = invite(app, &w.setup, &w.email("pending"), "member").await;
            (at(&text(&inv, "/id")), None)
        }
        ("GET", "/api/v1/invitations/{invitation}") => {
            let key = invitation(app, &w.setup, &w.email("invitee"), "member").await;
            (at(&key), None)
        }
        ("POST", "/api/v1/invitations/{invitation}/accept") => {
            let key = invitation(app, &w.setup, &w.email("invitee"), "member").await;
            let body = json!({"password": PASSWORD, "first_name": "Grace", "last_name": "Hopper"});
            (at(&key), Some(body))
        }
        ("GET", "/saas/signup/prefill") => {
            let key = invitation(app, &w.setup, &w.email("invitee"), "member").await;
            (format!("{template}?key={key}"), None)
        }
        ("POST", "/api/v1/api-keys/revoke-leaked") => {
            let (_, secret) = api_key(app, &w.setup).await;
            with(json!({"key": secret}))
        }
        ("POST", "/api/v1/applications") => with(json!({"name": "Matrix app"})),
        ("GET" | "DELETE", "/api/v1/applications/{id}") => (at(&application(app, w).await), None),
        ("PATCH", "/api/v1/applications/{id}") => (
            at(&application(app, w).await),
            Some(json!({"name": "Renamed"})),
        ),
        ("POST", "/api/v1/recordings") => {
            let id = application(app, w).await;
            with(json!({"application_id": id, "page": "/pricing", "duration_ms": 1200}))
        }
        ("POST", "/api/v1/usage") => with(json!({"meter": "api_calls", "quantity": 1})),
        ("POST", "/api/v1/billing/payment-method") => {
            with(json!({"payment_method": "pm_card_visa"}))
        }
        ("POST", "/api/v1/billing/top-up") => with(json!({"amount": 1000})),
        ("DELETE", "/api/v1/billing/payment-method") => plain(),
        // A Stripe event (unsigned: no secret is configured, so the signature is never read).
        ("POST", "/webhooks/stripe") => {
            with(json!({"id": "evt_matrix", "type": "ping", "created": 0, "data": {"object": {}}}))
        }
        // Scheduling a change never conflicts with the previous caller's (changing now to the
        // plan already held would).
        ("POST", "/api/v1/subscription/change") => {
            with(json!({"plan": "basic", "at": "period_end"}))
        }
        ("POST", "/api/v1/invitations") => {
            with(json!({"email": w.email("invited"), "role": "member", "send_email": false}))
        }
        ("POST", "/saas/invite") => with(json!({"email": w.email("invited"), "no_email": true})),
        ("POST", "/api/v1/api-keys") => with(json!({"name": "Matrix key"})),
        ("DELETE", "/api/v1/api-keys/{id}") | ("POST", "/api/v1/api-keys/{id}/rotate") => {
            let (id, _) = api_key(app, &w.setup).await;
            (at(&id), None)
        }
        ("POST", "/api/v1/bots") => with(json!({"name": "Matrix bot", "scopes": ["dashboard"]})),
        // Created (for the owner's business, or the caller's own) and deleted: the business
        // stays under its endpoint limit.
        ("POST", "/api/v1/webhooks") => with(json!({
            "url": "https://hooks.example.com/created",
            "events": ["api_key.created"],
            "description": "fresh",
        })),
        ("DELETE", "/api/v1/webhooks/{id}") => (at(&webhook(app, w, true).await), None),
        ("PATCH", "/api/v1/webhooks/{id}") => (
            at(&webhook(app, w, false).await),
            Some(json!({"description": "shared", "enabled": true})),
        ),
        ("GET", "/api/v1/webhooks/{id}" | "/api/v1/webhooks/{id}/deliveries")
        | ("POST", "/api/v1/webhooks/{id}/rotate-secret" | "/api/v1/webhooks/{id}/test") => {
            (at(&webhook(app, w, false).await), None)
        }
        ("POST", "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry") => {
            let id = webhook(app, w, false).await;
            let path = format!("/api/v1/webhooks/{id}/test");
            let queued = must(
                app,
                "POST",
                &path,
                Some(&w.setup),
                None,
                StatusCode::ACCEPTED,
            )
            .await;
            (
                at(&id).replace("{delivery_id}", &text(&queued, "/id")),
                None,
            )
        }
        ("DELETE", "/api/v1/bots/{id}") => {
            let (id, _) = bot(app, &w.setup).await;
            (at(&id), None)
        }
        ("PATCH", "/api/v1/members/{id}") => {
            let id = human_member(app, w).await;
            (at(&id), Some(json!({"role": "admin"})))
        }
        ("DELETE", "/api/v1/sessions/{id}") => {
            let session = login(app, &w.owner_email).await;
            let list = must(
                app,
                "GET",
                "/api/v1/sessions",
                Some(&session),
                None,
                StatusCode::OK,
            )
            .await;
            let id = list["data"]
                .as_array()
                .and_then(|all| all.iter().find(|s| s["current"] == true))
                .and_then(|s| s["id"].as_str())
                .expect("the current session is listed")
                .to_owned();
            (at(&id), None)
        }
        ("DELETE", "/api/v1/sessions") => plain(),
        ("DELETE", "/api/v1/identities/{id}") => {
            let me = must(
                app,
                "GET",
                "/api/v1/me",
                Some(&w.setup),
                None,
                StatusCode::OK,
            )
            .await;
            let user_id = text(&me, "/user/id").parse().expect("a user id");
            let now = app.app.clock.now();
            let identity = saaskit::store::identities::Identity {
                id: uuid::Uuid::now_v7(),
                user_id,
                provider: "matrix".to_owned(),
                subject: w.unique("subject-"),
                email: None,
                created_at: now,
                last_used_at: None,
            };
            let mut tx = app.app.db.begin().await.expect("a transaction");
            saaskit::store::identities::insert(tx.conn(), &identity)
                .await
                .expect("link an identity");
            tx.commit().await.expect("commit");
            (at(&identity.id.to_string()), None)
        }
        ("POST", "/api/v1/password/change") => with(json!({
            "current_password": PASSWORD,
            "new_password": PASSWORD,
        })),
        ("DELETE", "/api/v1/members/{id}")
        | ("POST", "/api/v1/members/{id}/transfer-ownership") => {
            let id = human_member(app, w).await;
            (at(&id), None)
        }
        ("POST", "/api/v1/sessions/switch") => with(json!({"business_id": w.victim_business})),
        ("DELETE", "/api/v1/me")
        | ("DELETE", "/api/v1/mfa/totp")
        | ("POST", "/api/v1/mfa/recovery-codes") => with(json!({"password": "not the password"})),
        ("POST", "/api/v1/mfa/totp/confirm") => with(json!({"code": "not a code"})),
        ("POST", "/api/v1/login/mfa") => with(json!({"mfa_token": "unknown", "code": "123456"})),
        ("POST", "/api/v1/login/magic-link") => with(json!({"email": "nobody@example.com"})),
        ("POST", "/api/v1/login/magic-link/confirm") => with(json!({"key": "unknown"})),
        ("POST", "/api/v1/login/passkey/finish" | "/api/v1/passkeys/register/finish") => {
            with(json!({"ceremony": uuid::Uuid::nil(), "credential": {}}))
        }
        ("PATCH" | "DELETE", "/api/v1/passkeys/{id}") => {
            let device = crate::passkeys::Device::default();
            let id = crate::passkeys::register(app, &w.setup, &device, "Matrix").await;
            (
                at(&id),
                (verb == "PATCH").then(|| json!({"name": "Renamed"})),
            )
        }
        ("PATCH", "/api/v1/business") => with(json!({"name": "Matrix business"})),
        ("POST", "/api/v1/admin/plans") => with(json!({
            "code": w.unique("matrix-plan-"),
            "name": "Matrix",
            "price": 0,
            "cycle_days": 30,
        })),
        ("PATCH", "/api/v1/admin/plans/{code}") => (
            template.replace("{code}", "spare"),
            Some(json!({"price": 0})),
        ),
        ("POST", "/api/v1/admin/plans/{code}/archive") => {
            (template.replace("{code}", "spare"), None)
        }
        ("POST", "/api/v1/admin/businesses/{id}/plan") => {
            (at(&w.victim_business), Some(json!({"plan": "unlimited"})))
        }
        ("POST", "/api/v1/admin/businesses/{id}/credits") => (
            at(&w.victim_business),
            Some(json!({"amount": 100, "note": "matrix"})),
        ),
        ("GET", "/api/v1/admin/businesses/{id}")
        | ("POST", "/api/v1/admin/businesses/{id}/deactivate") => (at(&w.victim_business), None),
        ("POST", "/api/v1/admin/users/{id}/deactivate") => (at(&w.victim_user), None),
        // Routes that take neither a body nor an id.
        (_, t) if !t.contains('{') && (verb == "GET" || bodyless_post(t)) => plain(),
        _ => {
            panic!("no fixture for {verb} {template}: add one to `prepare` in tests/api/matrix.rs")
        }
    }
}

fn bodyless_post(template: &str) -> bool {
    matches!(
        template,
        "/api/v1/logout"
            | "/api/v1/subscription/cancel"
            | "/api/v1/subscription/resume"
            | "/api/v1/email/verify/resend"
            | "/api/v1/billing/setup-intent"
            | "/api/v1/mfa/totp/setup"
            | "/api/v1/passkeys/register/start"
            | "/api/v1/login/passkey/start"
    )
}

/// The problem code a refusal must carry.
fn expected_code(caller: usize, row: &Row, status: u16) -> Option<&'static str> {
    match status {
        401 if row.path == "/api/v1/login/mfa" => Some("invalid_mfa_token"),
        401 => Some("unauthenticated"),
        403 if row.path == "/api/v1/invitations/{invitation}/accept" => {
            Some(if caller == BOT || caller == SDK_KEY {
                "not_a_person"
            } else {
                "invitation_for_another_email"
            })
        }
        403 if caller == SDK_KEY => Some("insufficient_scope"),
        403 if row.path.starts_with("/api/v1/admin/") => Some("staff_only"),
        403 if row.path == "/api/v1/password/change"
            || row.path == "/api/v1/sessions/switch"
            || row.path == "/api/v1/me"
            || row.path == "/api/v1/email/verify/resend"
            || row.path.starts_with("/api/v1/mfa")
            || row.path.starts_with("/api/v1/passkeys")
            || row.path.starts_with("/api/v1/identities") =>
        {
            Some("not_a_person")
        }
        403 if row.path.starts_with("/api/v1/subscription/")
            || row.path.starts_with("/api/v1/invitations")
            || row.path == "/saas/invite" =>
        {
            Some("forbidden")
        }
        403 => Some("forbidden_role"),
        _ => None,
    }
}

/// Sends every row's request as `caller` and records each answer that differs from the table.
async fn run_column(
    app: &TestApp,
    w: &World,
    rows: &[Row],
    caller: usize,
    token: Option<&str>,
    failures: &mut Vec<String>,
) {
    // What ends the caller's other sessions goes last, and logout (which ends the caller's own
    // token) after it.
    let ends_others = |r: &&Row| {
        (r.method, r.path) == ("DELETE", "/api/v1/sessions") || r.path == "/api/v1/password/change"
    };
    let is_logout = |r: &&Row| r.path == "/api/v1/logout";
    let demotes = |r: &&Row| r.path == "/api/v1/members/{id}/transfer-ownership";
    let ordered = rows
        .iter()
        .filter(|r| !is_logout(r) && !ends_others(r) && !demotes(r))
        .chain(rows.iter().filter(demotes))
        .chain(rows.iter().filter(ends_others))
        .chain(rows.iter().filter(is_logout));
    for row in ordered {
        let (path, body) = prepare(app, w, row.method, row.path).await;
        let (status, answer) = app.call(method(row.method), &path, token, body).await;
        let want = row.expect[caller];
        let who = CALLERS[caller];
        if status.as_u16() != want {
            failures.push(format!(
                "{} {} as {who}: expected {want}, got {} {answer}",
                row.method,
                row.path,
                status.as_u16()
            ));
        } else if let Some(code) = expected_code(caller, row, want)
            && answer["code"] != code
        {
            failures.push(format!(
                "{} {} as {who}: {want} as expected, but with code {} instead of {code:?}",
                row.method, row.path, answer["code"]
            ));
        }
    }
}

/// A request any live token may make, to show a caller's token worked before it was revoked,
/// deactivated or left to expire.
async fn assert_works(app: &TestApp, who: &str, token: &str) {
    let (status, body) = app.get("/api/v1/entitlements", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{who} should work at first: {body}");
}

/// Builds the businesses, people, bot and keys, and returns the fixtures' world with every
/// caller's token (in the order of [`CALLERS`]) and the staff session.
async fn build(app: &TestApp) -> (World, Vec<Option<String>>, String) {
    let staff_email = "staff@example.com";
    app.signup(staff_email).await;
    saaskit::billing::admin::set_staff(&app.app, staff_email, true)
        .await
        .expect("make staff");
    let staff = login(app, staff_email).await;

    let owner_email = "owner@example.com";
    let owner = app.signup(owner_email).await;
    let setup = token_of(&owner);
    let business = text(&owner, "/business/id");
    make_unlimited(app, &staff, &business).await;
    // A public plan to schedule changes to, and a spare one for the plan admin routes.
    for code in ["basic", "spare"] {
        let body = json!({"code": code, "name": code, "price": 0, "cycle_days": 30});
        let path = "/api/v1/admin/plans";
        must(
            app,
            "POST",
            path,
            Some(&staff),
            Some(body),
            StatusCode::CREATED,
        )
        .await;
    }
    let victim = app.signup("victim@example.com").await;

    let mut tokens: Vec<Option<String>> = vec![None; CALLERS.len()];
    tokens[OWNER] = Some(login(app, owner_email).await);
    tokens[ADMIN] = Some(token_of(
        &join(app, &setup, "admin@example.com", "admin").await,
    ));
    tokens[MEMBER] = Some(token_of(
        &join(app, &setup, "member@example.com", "member").await,
    ));
    tokens[BOT] = Some(bot(app, &setup).await.1);
    tokens[SDK_KEY] = Some(api_key(app, &setup).await.1);

    let (revoked_id, revoked) = api_key(app, &setup).await;
    assert_works(app, "the key to revoke", &revoked).await;
    let path = format!("/api/v1/api-keys/{revoked_id}");
    must(
        app,
        "DELETE",
        &path,
        Some(&setup),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    tokens[REVOKED_KEY] = Some(revoked);

    let expiring = login(app, owner_email).await;
    assert_works(app, "the session left to expire", &expiring).await;
    tokens[EXPIRED_TOKEN] = Some(expiring);

    tokens[OTHER_BUSINESS] = Some(app.signup_token("other@example.com").await);

    let gone = join(app, &setup, "gone@example.com", "member").await;
    assert_works(app, "the user to deactivate", &token_of(&gone)).await;
    let path = format!("/api/v1/admin/users/{}/deactivate", text(&gone, "/user/id"));
    must(
        app,
        "POST",
        &path,
        Some(&staff),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    tokens[DEACTIVATED_USER] = Some(token_of(&gone));

    let closed = app.signup("closed@example.com").await;
    assert_works(app, "the business to deactivate", &token_of(&closed)).await;
    let path = format!(
        "/api/v1/admin/businesses/{}/deactivate",
        text(&closed, "/business/id")
    );
    must(
        app,
        "POST",
        &path,
        Some(&staff),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    tokens[DEACTIVATED_BUSINESS] = Some(token_of(&closed));

    let world = World {
        setup,
        owner_email: owner_email.to_owned(),
        victim_business: text(&victim, "/business/id"),
        victim_user: text(&victim, "/user/id"),
        counter: AtomicU32::new(0),
    };
    (world, tokens, staff_email.to_owned())
}

db_test! {
    async fn every_route_answers_each_kind_of_caller_as_the_matrix_says(app) {
        // Who may call what, not how often: rate limits have their own tests (security.rs),
        // and the matrix makes more logins and resets from one address than they allow.
        let app = TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), |c| {
            c.rate_limit = saaskit::ratelimit::Switch::Off;
        })
        .await;
        let rows = table();
        assert_the_table_lists_every_route(&app, &rows).await;

        let (mut world, tokens, staff_email) = build(&app).await;
        let mut failures = Vec::new();
        for (caller, token) in tokens.iter().enumerate() {
            if caller != EXPIRED_TOKEN {
                run_column(&app, &world, &rows, caller, token.as_deref(), &mut failures).await;
            }
            if caller == OWNER {
                // The owner ended their other sessions, the fixtures' one among them.
                world.setup = login(&app, &world.owner_email).await;
            }
        }

        // The last phase: past the session lifetime. The setup and staff sessions expire too
        // (log in again), and so does the business's period (staff start a new one).
        let lifetime = i64::from(app.app.config.session_lifetime_hours);
        app.clock.advance(Duration::hours(lifetime + 1));
        let staff = login(&app, &staff_email).await;
        let setup = login(&app, &world.owner_email).await;
        let (_, me) = app.get("/api/v1/me", Some(&setup)).await;
        make_unlimited(&app, &staff, &text(&me, "/business/id")).await;
        let world = World { setup, ..world };
        let expired = tokens[EXPIRED_TOKEN].as_deref();
        run_column(&app, &world, &rows, EXPIRED_TOKEN, expired, &mut failures).await;

        assert!(
            failures.is_empty(),
            "{} answers differ from the authorization matrix:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
