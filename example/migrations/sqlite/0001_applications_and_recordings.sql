-- The example product's tables: applications, and the recordings an SDK sends for them.
-- Databases made before products had migrations of their own already have them (saaskit's
-- 0003 created them then, and a migration once applied never changes): IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS applications (
    id          BLOB PRIMARY KEY NOT NULL,
    business_id BLOB NOT NULL REFERENCES businesses (id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    deleted_at  BIGINT   -- deleted applications stay, so their recordings keep their history
);
CREATE INDEX IF NOT EXISTS applications_business ON applications (business_id, id) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS recordings (
    id             BLOB PRIMARY KEY NOT NULL,
    business_id    BLOB NOT NULL REFERENCES businesses (id),
    application_id BLOB NOT NULL REFERENCES applications (id),
    data           TEXT NOT NULL,   -- the SDK's payload, JSON
    created_at     BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_business ON recordings (business_id, id);
CREATE INDEX IF NOT EXISTS recordings_application ON recordings (application_id, id);
