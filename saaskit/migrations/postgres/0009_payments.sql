-- Payments through a provider (Stripe): each business's customer and card on file, every
-- payment attempted, and the provider's events applied (each once). PostgreSQL flavour.

-- The ledger learns where money came from: `payment` (a charge that succeeded, positive),
-- `refund` (negative), `dispute` (negative when opened, positive when won). `payment_id` names
-- the payment an entry belongs to; `provider_ref` makes each provider fact count once (the
-- payment intent, a charge's refunded total, a dispute's opening or win).
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('grant', 'renewal_charge', 'proration_credit', 'refund', 'adjustment',
                    'payment', 'dispute'));
ALTER TABLE ledger_entries ADD COLUMN payment_id UUID;
ALTER TABLE ledger_entries ADD COLUMN provider_ref TEXT;
CREATE UNIQUE INDEX ledger_entries_provider_ref
    ON ledger_entries (provider_ref) WHERE provider_ref IS NOT NULL;
CREATE INDEX ledger_entries_payment ON ledger_entries (payment_id) WHERE payment_id IS NOT NULL;

-- A business's customer at the provider, made on first need, and its default card.
CREATE TABLE payment_accounts (
    business_id       UUID PRIMARY KEY NOT NULL REFERENCES businesses (id),
    provider          TEXT NOT NULL,
    customer_id       TEXT NOT NULL UNIQUE,
    payment_method_id TEXT,
    card_brand        TEXT,
    card_last4        TEXT,
    card_exp_month    BIGINT,
    card_exp_year     BIGINT,
    -- Set when a payment is disputed: staff look at the business.
    flagged_at        TIMESTAMPTZ,
    flag_reason       TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);

-- Every payment attempted. `idempotency_key` is claimed before the provider is called (and sent
-- as its Idempotency-Key), so two workers or a retried request never charge twice.
CREATE TABLE payments (
    id                  UUID PRIMARY KEY NOT NULL,
    business_id         UUID NOT NULL REFERENCES businesses (id),
    provider            TEXT NOT NULL,
    purpose             TEXT NOT NULL CHECK (purpose IN ('top_up', 'renewal', 'plan_change')),
    idempotency_key     TEXT NOT NULL UNIQUE,
    amount              BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    status              TEXT NOT NULL
        CHECK (status IN ('pending', 'requires_action', 'succeeded', 'failed')),
    subscription_id     UUID REFERENCES subscriptions (id),
    period_start        TIMESTAMPTZ,
    attempt             BIGINT,
    provider_payment_id TEXT UNIQUE,
    provider_charge_id  TEXT,
    card_brand          TEXT,
    card_last4          TEXT,
    decline_code        TEXT,
    failure_message     TEXT,
    refunded_amount     BIGINT NOT NULL DEFAULT 0,
    disputed_amount     BIGINT NOT NULL DEFAULT 0,
    -- The provider's time of the newest event applied to the row (seconds): an older event
    -- never overwrites what a newer one said.
    provider_updated_at BIGINT,
    actor_kind          TEXT NOT NULL CHECK (actor_kind IN ('user', 'admin', 'system')),
    actor_id            UUID,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX payments_business ON payments (business_id, created_at, id);
CREATE INDEX payments_unsettled ON payments (updated_at) WHERE status = 'pending';

-- The provider's events, each applied once.
CREATE TABLE provider_events (
    id          TEXT PRIMARY KEY NOT NULL,
    provider    TEXT NOT NULL,
    type        TEXT NOT NULL,
    created     BIGINT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
