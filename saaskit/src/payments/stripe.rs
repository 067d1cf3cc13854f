//! Stripe over its HTTP API: form-encoded requests, the API version pinned, an
//! `Idempotency-Key` on every POST (so a retried call is answered, not repeated, by Stripe),
//! and answers read into the few facts saaskit keeps.

use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;

use super::provider::{Card, Charge, ProviderError};

/// The API version every request pins, so that Stripe's answers keep the shape read here.
pub const API_VERSION: &str = "2024-06-20";

#[derive(Debug, Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    secret_key: String,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    payment_intent: Option<Value>,
    #[serde(default)]
    charge: Option<Value>,
}

impl Stripe {
    pub fn new(base: &str, secret_key: &str) -> anyhow::Result<Stripe> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the Stripe HTTP client")?;
        Ok(Stripe {
            http,
            base: base.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Result<Value, (u16, ErrorDetail)>, ProviderError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.secret_key, Some(""))
            .header("Stripe-Version", API_VERSION);
        if method == reqwest::Method::POST {
            request = request.form(form);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))
            .map_err(ProviderError::Unavailable)?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("reading the answer to {method} {path} ({status})"))
            .map_err(ProviderError::Unavailable)?;
        if status.is_success() {
            return Ok(Ok(body));
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ProviderError::Unavailable(anyhow::anyhow!(
                "{method} {path} answered {status}: {body}"
            )));
        }
        let detail = serde_json::from_value::<ErrorBody>(body.clone())
            .map(|b| b.error)
            .map_err(|_| {
                ProviderError::Unavailable(anyhow::anyhow!(
                    "{method} {path} answered {status} without an error object: {body}"
                ))
            })?;
        Ok(Err((status.as_u16(), detail)))
    }

    /// A call whose refusal is an error (everything but a charge).
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, ProviderError> {
        self.call(method, path, form, idempotency_key)
            .await?
            .map_err(|(status, e)| ProviderError::Refused {
                status,
                code: e.code.or(e.kind).unwrap_or_else(|| "unknown".into()),
                param: e.param,
                message: e.message.unwrap_or_default(),
            })
    }

    /// A new customer for a business (`metadata[business_id]` names it).
    pub async fn create_customer(
        &self,
        business_id: &str,
        name: &str,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        let form = [
            ("name", name.to_owned()),
            ("metadata[business_id]", business_id.to_owned()),
        ];
        let customer = self
            .request(
                reqwest::Method::POST,
                "/v1/customers",
                &form,
                Some(idempotency_key),
            )
            .await?;
        string_at(&customer, "id").map_err(ProviderError::Unavailable)
    }

    /// A SetupIntent to save a card for later, off-session use: its client secret, for Stripe.js.
    pub async fn create_setup_intent(
        &self,
        customer: &str,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        let form = [
            ("customer", customer.to_owned()),
            ("usage", "off_session".to_owned()),
            ("payment_method_types[]", "card".to_owned()),
        ];
        let intent = self
            .request(
                reqwest::Method::POST,
                "/v1/setup_intents",
                &form,
                Some(idempotency_key),
            )
            .await?;
        string_at(&intent, "client_secret").map_err(ProviderError::Unavailable)
    }

    /// Attaches `payment_method` to `customer` and makes it the default for invoices and
    /// off-session charges.
    pub async fn attach_default(
        &self,
        customer: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<Card, ProviderError> {
        let path = format!(
            "/v1/payment_methods/{}/attach",
            path_segment(payment_method)
        );
        let attached = self
            .request(
                reqwest::Method::POST,
                &path,
                &[("customer", customer.to_owned())],
                Some(&format!("{idempotency_key}:attach")),
            )
            .await?;
        self.request(
            reqwest::Method::POST,
            &format!("/v1/customers/{}", path_segment(customer)),
            &[(
                "invoice_settings[default_payment_method]",
                payment_method.to_owned(),
            )],
            Some(&format!("{idempotency_key}:default")),
        )
        .await?;
        card_of(&attached).map_err(ProviderError::Unavailable)
    }

    /// Leaves the customer without a default payment method (detaching a card does not).
    pub async fn clear_default(
        &self,
        customer: &str,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        self.request(
            reqwest::Method::POST,
            &format!("/v1/customers/{}", path_segment(customer)),
            &[("invoice_settings[default_payment_method]", String::new())],
            Some(idempotency_key),
        )
        .await
        .map(|_| ())
    }

    pub async fn detach(
        &self,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        let path = format!(
            "/v1/payment_methods/{}/detach",
            path_segment(payment_method)
        );
        self.request(reqwest::Method::POST, &path, &[], Some(idempotency_key))
            .await
            .map(|_| ())
    }

    /// Charges `amount` (minor units of `currency`) to the customer's card, confirmed at once.
    /// `off_session`: the customer is not there (a renewal); a card that needs them declines
    /// with `authentication_required` instead of asking.
    #[allow(clippy::too_many_arguments)]
    pub async fn charge(
        &self,
        customer: &str,
        payment_method: &str,
        amount: i64,
        currency: &str,
        off_session: bool,
        payment_id: &str,
        description: &str,
        idempotency_key: &str,
    ) -> Result<Charge, ProviderError> {
        let mut form = vec![
            ("amount", amount.to_string()),
            ("currency", currency.to_ascii_lowercase()),
            ("customer", customer.to_owned()),
            ("payment_method", payment_method.to_owned()),
            ("confirm", "true".to_owned()),
            // In metadata (a PaymentIntent's `description` is not taken by every Stripe
            // implementation the tests run against).
            ("metadata[description]", description.to_owned()),
            ("metadata[saaskit_payment_id]", payment_id.to_owned()),
        ];
        if off_session {
            form.push(("off_session", "true".to_owned()));
        }
        let answer = self
            .call(
                reqwest::Method::POST,
                "/v1/payment_intents",
                &form,
                Some(idempotency_key),
            )
            .await?;
        match answer {
            Ok(intent) => intent_outcome(&intent).map_err(ProviderError::Unavailable),
            Err((status, e)) if status == 402 || e.kind.as_deref() == Some("card_error") => {
                let intent = e
                    .payment_intent
                    .as_ref()
                    .and_then(|pi| pi.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let charge = match &e.charge {
                    Some(Value::String(id)) => Some(id.clone()),
                    Some(other) => other.get("id").and_then(Value::as_str).map(str::to_owned),
                    None => None,
                };
                Ok(Charge::Declined {
                    intent,
                    charge,
                    code: e
                        .decline_code
                        .or(e.code)
                        .unwrap_or_else(|| "card_declined".into()),
                    message: e.message.unwrap_or_default(),
                })
            }
            Err((status, e)) => Err(ProviderError::Refused {
                status,
                code: e.code.or(e.kind).unwrap_or_else(|| "unknown".into()),
                param: e.param,
                message: e.message.unwrap_or_default(),
            }),
        }
    }
}

/// What a PaymentIntent's status says (in a charge's answer or an event).
pub fn intent_outcome(intent: &Value) -> anyhow::Result<Charge> {
    let id = string_at(intent, "id")?;
    let status = string_at(intent, "status")?;
    let charge = latest_charge(intent);
    Ok(match status.as_str() {
        "succeeded" => Charge::Succeeded { intent: id, charge },
        "requires_action" | "requires_confirmation" => Charge::RequiresAction {
            intent: id,
            client_secret: string_at(intent, "client_secret")?,
        },
        "processing" => Charge::Processing { intent: id },
        // `requires_payment_method` after a confirmation: the card was declined.
        _ => {
            let error = intent.get("last_payment_error");
            let field = |name: &str| {
                error
                    .and_then(|e| e.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            Charge::Declined {
                intent: Some(id),
                charge,
                code: field("decline_code")
                    .or_else(|| field("code"))
                    .unwrap_or_else(|| "card_declined".into()),
                message: field("message").unwrap_or_default(),
            }
        }
    })
}

/// The id of a PaymentIntent's latest charge: `latest_charge` (an id or, expanded, an object),
/// or the older `charges.data[0]`.
pub fn latest_charge(intent: &Value) -> Option<String> {
    match intent.get("latest_charge") {
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Object(charge)) => charge.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => intent
            .pointer("/charges/data/0/id")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

fn card_of(payment_method: &Value) -> anyhow::Result<Card> {
    let card = payment_method
        .get("card")
        .context("the payment method is not a card")?;
    Ok(Card {
        payment_method: string_at(payment_method, "id")?,
        brand: string_at(card, "brand")?,
        last4: string_at(card, "last4")?,
        exp_month: card.get("exp_month").and_then(Value::as_i64).unwrap_or(0),
        exp_year: card.get("exp_year").and_then(Value::as_i64).unwrap_or(0),
    })
}

fn string_at(value: &Value, name: &str) -> anyhow::Result<String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("Stripe's answer has no string `{name}`"))
}

/// An id as one path segment: Stripe's ids are `[A-Za-z0-9_]`; anything else is dropped, so a
/// caller's value can never reach another path.
fn path_segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_intent_status_becomes_an_outcome() {
        let ok = json!({"id": "pi_1", "status": "succeeded", "latest_charge": "ch_1"});
        assert_eq!(
            intent_outcome(&ok).expect("read"),
            Charge::Succeeded {
                intent: "pi_1".into(),
                charge: Some("ch_1".into())
            }
        );
        let action =
            json!({"id": "pi_2", "status": "requires_action", "client_secret": "pi_2_secret_x"});
        assert_eq!(
            intent_outcome(&action).expect("read"),
            Charge::RequiresAction {
                intent: "pi_2".into(),
                client_secret: "pi_2_secret_x".into()
            }
        );
        let failed = json!({"id": "pi_3", "status": "requires_payment_method",
            "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "no"},
            "latest_charge": {"id": "ch_3"}});
        assert_eq!(
            intent_outcome(&failed).expect("read"),
            Charge::Declined {
                intent: Some("pi_3".into()),
                charge: Some("ch_3".into()),
                code: "insufficient_funds".into(),
                message: "no".into()
            }
        );
    }

    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert_eq!(
            path_segment("pm_123/../../v1/charges?x=1"),
            "pm_123v1chargesx1"
        );
    }
}
