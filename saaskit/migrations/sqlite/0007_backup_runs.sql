-- The scheduled backups (`SAASKIT_BACKUP_EVERY`, SQLite only): one row per slot of the schedule,
-- inserted by the process that takes that slot's backup, so each backup is taken once however
-- many processes serve the database. A claim without `finished_at` whose process died is taken
-- over after a lease; a failed backup's claim is removed, so the slot is tried again.
CREATE TABLE backup_runs (
    slot        BIGINT PRIMARY KEY NOT NULL,
    claimed_at  BIGINT NOT NULL,
    finished_at BIGINT,
    file        TEXT,
    bytes       BIGINT
);
