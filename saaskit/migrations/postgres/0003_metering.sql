-- Metering, API keys, bots and the example product. PostgreSQL flavour; keep in step with
-- migrations/sqlite.

-- Bots are members that are not people: a user row that can never log in or reset a password.
ALTER TABLE users ADD COLUMN is_bot BOOLEAN NOT NULL DEFAULT FALSE;

-- API keys keep their id across rotations; during a rotation's overlap the old secret lives on
-- as a row pointing at the key it was rotated into.
ALTER TABLE tokens ADD COLUMN replaced_by UUID REFERENCES tokens (id);
ALTER TABLE tokens ADD COLUMN created_by UUID REFERENCES users (id);
ALTER TABLE tokens ADD COLUMN revoked_reason TEXT;
ALTER TABLE tokens ADD COLUMN leak_reported_ip TEXT;
ALTER TABLE tokens ADD COLUMN leak_reported_user_agent TEXT;
-- Sessions carry the `dashboard` scope (earlier versions wrote a wildcard).
UPDATE tokens SET scopes = '["dashboard"]' WHERE scopes = '["*"]';

-- Per-cycle meters: one row per business, meter and billing period. A new period starts a new
-- row at zero; old rows are the usage history.
CREATE TABLE usage_counters (
    business_id  UUID NOT NULL REFERENCES businesses (id),
    meter        TEXT NOT NULL,
    period_start TIMESTAMPTZ NOT NULL,
    period_end   TIMESTAMPTZ NOT NULL,
    used         BIGINT NOT NULL CHECK (used >= 0),
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (business_id, meter, period_start)
);

-- Gauges: how many of a thing exist now, kept in the transaction that creates or deletes one.
CREATE TABLE gauges (
    business_id UUID NOT NULL REFERENCES businesses (id),
    meter       TEXT NOT NULL,
    used        BIGINT NOT NULL CHECK (used >= 0),
    PRIMARY KEY (business_id, meter)
);
INSERT INTO gauges (business_id, meter, used)
SELECT business_id, 'members', COUNT(*) FROM members WHERE status = 'active' GROUP BY business_id;

-- The first successful response to a metered POST, replayed for retries with the same key.
CREATE TABLE idempotency_keys (
    business_id  UUID NOT NULL REFERENCES businesses (id),
    key          TEXT NOT NULL,
    fingerprint  BYTEA NOT NULL,   -- SHA-256 of method, route and body: a reused key must match
    status       BIGINT NOT NULL,
    body         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (business_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- The example product (src/example): applications, and the recordings an SDK sends for them.
CREATE TABLE applications (
    id          UUID PRIMARY KEY NOT NULL,
    business_id UUID NOT NULL REFERENCES businesses (id),
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ   -- deleted applications stay, so their recordings keep their history
);
CREATE INDEX applications_business ON applications (business_id, id) WHERE deleted_at IS NULL;

CREATE TABLE recordings (
    id             UUID PRIMARY KEY NOT NULL,
    business_id    UUID NOT NULL REFERENCES businesses (id),
    application_id UUID NOT NULL REFERENCES applications (id),
    data           TEXT NOT NULL,   -- the SDK's payload, JSON
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX recordings_business ON recordings (business_id, id);
CREATE INDEX recordings_application ON recordings (application_id, id);
