-- Billing: pending plan changes, the credits ledger, and lifecycle events. SQLite flavour.

ALTER TABLE subscriptions ADD COLUMN pending_plan_id BLOB REFERENCES plans (id);
ALTER TABLE subscriptions ADD COLUMN cancel_at_period_end BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN ended_at BIGINT;
CREATE INDEX subscriptions_business ON subscriptions (business_id);
-- The sweep walks due subscriptions in (period end, id) order, a page at a time.
DROP INDEX subscriptions_due;
CREATE INDEX subscriptions_due ON subscriptions (current_period_end, id) WHERE is_current;

-- Append-only; a business's balance is the sum of its entries (minor units; charges negative).
CREATE TABLE ledger_entries (
    id              BLOB PRIMARY KEY NOT NULL,
    business_id     BLOB NOT NULL REFERENCES businesses (id),
    kind            TEXT NOT NULL
        CHECK (kind IN ('grant', 'renewal_charge', 'proration_credit', 'refund', 'adjustment')),
    amount          BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    subscription_id BLOB REFERENCES subscriptions (id),
    period_start    BIGINT,
    note            TEXT,
    actor_kind      TEXT NOT NULL CHECK (actor_kind IN ('user', 'admin', 'system')),
    actor_id        BLOB,
    created_at      BIGINT NOT NULL
);
CREATE INDEX ledger_entries_business ON ledger_entries (business_id, created_at);
-- A cycle is charged at most once, whatever the number of sweeps or replicas.
CREATE UNIQUE INDEX ledger_entries_one_charge_per_cycle
    ON ledger_entries (subscription_id, period_start) WHERE kind = 'renewal_charge';

-- Who did what to a subscription, when, with the state before and after (JSON).
CREATE TABLE events (
    id              BLOB PRIMARY KEY NOT NULL,
    business_id     BLOB NOT NULL REFERENCES businesses (id),
    subscription_id BLOB REFERENCES subscriptions (id),
    kind            TEXT NOT NULL,
    actor_kind      TEXT NOT NULL CHECK (actor_kind IN ('user', 'admin', 'system')),
    actor_id        BLOB,
    before          TEXT,
    after           TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX events_business ON events (business_id, created_at);
