-- The scheduled backups (`SAASKIT_BACKUP_EVERY`): they are for SQLite only, and this table
-- exists here so both databases have one schema. See the SQLite migration.
CREATE TABLE backup_runs (
    slot        BIGINT PRIMARY KEY NOT NULL,
    claimed_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    file        TEXT,
    bytes       BIGINT
);
