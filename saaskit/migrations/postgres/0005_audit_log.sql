-- The audit log: every security, team and billing event, each written in the transaction of the
-- change it records. Entries form a hash chain (seq 1, 2, 3, ... each hashing the previous
-- entry's hash), and audit_chain holds the head, so an edited, removed or truncated entry shows.
CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    action      TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    UUID,
    business_id UUID,
    target_kind TEXT,
    target_id   TEXT,
    ip          TEXT,
    user_agent  TEXT,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_log_business ON audit_log (business_id, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);

CREATE TABLE audit_chain (
    id   INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_chain (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
