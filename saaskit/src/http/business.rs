//! The caller's business: `GET /business`, `PATCH /business` (its name, and whether its members
//! must sign in with a second factor). The rules live in `teams::business`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::accounts::BusinessView;
use crate::http::extract::{ApiJson, Dashboard, DashboardRead};
use crate::http::openapi::BusinessNameText;
use crate::teams::business::{self, BusinessError, Changes};

impl From<BusinessError> for ApiError {
    fn from(err: BusinessError) -> Self {
        match err {
            BusinessError::Forbidden(why) => ApiError::forbidden("forbidden_role", why),
            BusinessError::Name(invalid) => {
                ApiError::validation(vec![FieldError::new("name", invalid.code, invalid.message)])
            }
            BusinessError::MfaNotEnabled => ApiError::conflict(
                "mfa_not_enabled",
                "Turn on two-factor sign-in for yourself first (POST /api/v1/mfa/totp/setup): \
                 requiring it of every member would otherwise lock you out.",
            ),
            BusinessError::Unexpected(e) => e.into(),
        }
    }
}

/// `GET /api/v1/business`
#[utoipa::path(
    get,
    path = "/business",
    tag = "business",
    summary = "My business",
    description = "The business the caller acts for.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The business.", body = BusinessView)),
)]
pub async fn get_business(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<BusinessView>> {
    let found = business::get(&app, &p).await?;
    Ok(Json(BusinessView::from(&found)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessChanges {
    /// A new name (owners and admins).
    #[schema(value_type = Option<BusinessNameText>)]
    pub name: Option<String>,
    /// Whether every member must sign in with a second factor (owners only; turning it on
    /// needs one's own first). Members without one may then only set one up.
    pub require_mfa: Option<bool>,
}

/// `PATCH /api/v1/business`
#[utoipa::path(
    patch,
    path = "/business",
    tag = "business",
    summary = "Change my business",
    description = "Renames the business (owners and admins) or requires a second factor of every \
        member (owners, who must have one themselves). Members without one then get 403 \
        `mfa_enrollment_required` everywhere but `me`, logout and the two-factor set-up.",
    request_body = BusinessChanges,
    security(("session" = []), ("bot_token" = [])),
    responses(
        (status = 200, description = "The business as it is now.", body = BusinessView),
        (status = 403, description = "`forbidden_role`."),
        (status = 409, description = "`mfa_not_enabled`: the caller has no second factor."),
        (status = 422, description = "An unacceptable name."),
    ),
)]
pub async fn update_business(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<BusinessChanges>,
) -> ApiResult<Json<BusinessView>> {
    let changes = Changes {
        name: body.name.as_deref(),
        require_mfa: body.require_mfa,
    };
    let updated = business::update(&app, &p, changes).await?;
    Ok(Json(BusinessView::from(&updated)))
}
