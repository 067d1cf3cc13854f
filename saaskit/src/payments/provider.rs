//! The payment-provider boundary: what saaskit asks of whoever takes the money, in its own
//! words (a customer, a card saved for later, a charge and what came of it). Stripe
//! ([`super::stripe`]) is the one implementation; another provider is another variant here, and
//! nothing above this module changes.

use super::stripe::Stripe;

/// A card as saaskit shows it: never its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub payment_method: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
}

/// What a charge came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    Succeeded {
        intent: String,
        charge: Option<String>,
    },
    /// The customer must act (3-D Secure): the client finishes with Stripe.js and
    /// `client_secret`; the outcome arrives as a webhook.
    RequiresAction {
        intent: String,
        client_secret: String,
    },
    /// Still being processed by the card network: the outcome arrives as a webhook.
    Processing { intent: String },
    Declined {
        intent: Option<String>,
        charge: Option<String>,
        /// The issuer's decline code (`insufficient_funds`…) or, without one, Stripe's error code.
        code: String,
        message: String,
    },
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// the provider refused the request (4xx): `code`/`param` say why (`resource_missing`…).
    #[error("the provider refused the request ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        param: Option<String>,
        message: String,
    },
    /// No answer, or a server error: whether it happened is unknown (retry with the same key).
    #[error("the provider could not be reached or failed: {0:#}")]
    Unavailable(anyhow::Error),
}

/// A payment provider.
#[derive(Debug, Clone)]
pub enum Provider {
    Stripe(Stripe),
}

impl Provider {
    /// A new customer for a business.
    pub async fn create_customer(
        &self,
        business_id: &str,
        name: &str,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        match self {
            Provider::Stripe(s) => s.create_customer(business_id, name, idempotency_key).await,
        }
    }

    /// What the browser needs to collect a card for later, off-session use (a client secret).
    pub async fn create_setup_intent(
        &self,
        customer: &str,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        match self {
            Provider::Stripe(s) => s.create_setup_intent(customer, idempotency_key).await,
        }
    }

    /// Makes `payment_method` the customer's default card.
    pub async fn attach_default(
        &self,
        customer: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<Card, ProviderError> {
        match self {
            Provider::Stripe(s) => {
                s.attach_default(customer, payment_method, idempotency_key)
                    .await
            }
        }
    }

    /// Leaves the customer without a default card.
    pub async fn clear_default(
        &self,
        customer: &str,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        match self {
            Provider::Stripe(s) => s.clear_default(customer, idempotency_key).await,
        }
    }

    /// Forgets a card.
    pub async fn detach(
        &self,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        match self {
            Provider::Stripe(s) => s.detach(payment_method, idempotency_key).await,
        }
    }

    /// Charges the card now (see [`Stripe::charge`]).
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
        match self {
            Provider::Stripe(s) => {
                s.charge(
                    customer,
                    payment_method,
                    amount,
                    currency,
                    off_session,
                    payment_id,
                    description,
                    idempotency_key,
                )
                .await
            }
        }
    }
}
