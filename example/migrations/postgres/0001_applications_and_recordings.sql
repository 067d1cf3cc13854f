-- The example product's tables: applications, and the recordings an SDK sends for them.
-- Databases made before products had migrations of their own already have them (saaskit's
-- 0003 created them then, and a migration once applied never changes): IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS applications (
    id          UUID PRIMARY KEY NOT NULL,
    business_id UUID NOT NULL REFERENCES businesses (id),
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ   -- deleted applications stay, so their recordings keep their history
);
CREATE INDEX IF NOT EXISTS applications_business ON applications (business_id, id) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS recordings (
    id             UUID PRIMARY KEY NOT NULL,
    business_id    UUID NOT NULL REFERENCES businesses (id),
    application_id UUID NOT NULL REFERENCES applications (id),
    data           TEXT NOT NULL,   -- the SDK's payload, JSON
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_business ON recordings (business_id, id);
CREATE INDEX IF NOT EXISTS recordings_application ON recordings (application_id, id);
