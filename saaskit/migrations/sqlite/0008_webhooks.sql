-- Outgoing webhooks. An endpoint belongs to a business; its signing secret is sealed (see
-- src/seal.rs), with the previous one kept for 24 hours after a rotation. A delivery is one
-- event for one endpoint: written in the transaction of the change it reports, claimed by a
-- worker on any replica under a lease (`next_attempt_at` pushed ahead), retried on a schedule,
-- and kept once delivered or failed. The body is the exact JSON signed and sent.
CREATE TABLE webhook_endpoints (
    id                         BLOB PRIMARY KEY NOT NULL,
    business_id                BLOB NOT NULL REFERENCES businesses (id),
    url                        TEXT NOT NULL,
    description                TEXT NOT NULL DEFAULT '',
    events                     TEXT NOT NULL,          -- a JSON array of event types
    enabled                    BOOLEAN NOT NULL,
    secret                     TEXT NOT NULL,          -- sealed
    previous_secret            TEXT,                   -- sealed
    previous_secret_expires_at BIGINT,
    failing_since              BIGINT,
    disabled_reason            TEXT,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_business ON webhook_endpoints (business_id);

CREATE TABLE webhook_deliveries (
    id              BLOB PRIMARY KEY NOT NULL,
    endpoint_id     BLOB NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    business_id     BLOB NOT NULL REFERENCES businesses (id),
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    response_status BIGINT,
    response_body   TEXT,
    duration_ms     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

-- `quota.threshold_reached` fires once per meter, threshold and cycle: the first write to cross
-- it inserts its mark, in its own transaction. A mark not yet `emitted_at` is an event waiting
-- to become deliveries (the batched metered write leaves that to the step after it, or to the
-- worker should the process stop in between).
CREATE TABLE webhook_quota_marks (
    business_id  BLOB NOT NULL REFERENCES businesses (id),
    meter        TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    threshold    BIGINT NOT NULL,
    used         BIGINT NOT NULL,
    quota_limit  BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    emitted_at   BIGINT,
    PRIMARY KEY (business_id, meter, period_start, threshold)
);
CREATE INDEX webhook_quota_marks_waiting ON webhook_quota_marks (created_at) WHERE emitted_at IS NULL;
