-- Sign-in beyond the password: TOTP two-factor (its seed sealed, see seal.rs), single-use
-- recovery codes (digests only), a business's rule that its members use a second factor, and
-- the one-time keys of a login's second step and of magic links. SQLite flavour.

-- A person's authenticator: `confirmed_at` is null while set-up waits for a first code.
-- `last_step` is the newest 30-second step a code was accepted for: no code is taken twice.
CREATE TABLE user_totp (
    user_id       BLOB PRIMARY KEY NOT NULL REFERENCES users (id),
    secret_sealed TEXT NOT NULL,
    confirmed_at  BIGINT,
    last_step     BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    id         BLOB PRIMARY KEY NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users (id),
    hash       BLOB NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

ALTER TABLE businesses ADD COLUMN require_mfa BOOLEAN NOT NULL DEFAULT 0;

-- SQLite cannot alter a CHECK: the table is made anew with its data.
CREATE TABLE one_time_keys_new (
    id              BLOB PRIMARY KEY NOT NULL,
    purpose         TEXT NOT NULL
        CHECK (purpose IN ('password_reset', 'invitation', 'email_verification', 'mfa_login',
                           'magic_link')),
    hash            BLOB NOT NULL UNIQUE,
    user_id         BLOB REFERENCES users (id),
    business_id     BLOB REFERENCES businesses (id),
    email           TEXT,
    role            TEXT,
    created_by      BLOB REFERENCES users (id),
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT,
    revoked_at      BIGINT
);
INSERT INTO one_time_keys_new (id, purpose, hash, user_id, business_id, email, role, created_by,
    failed_attempts, created_at, expires_at, used_at, revoked_at)
    SELECT id, purpose, hash, user_id, business_id, email, role, created_by, failed_attempts,
           created_at, expires_at, used_at, revoked_at FROM one_time_keys;
DROP TABLE one_time_keys;
ALTER TABLE one_time_keys_new RENAME TO one_time_keys;
CREATE INDEX one_time_keys_user ON one_time_keys (user_id);
CREATE INDEX one_time_keys_business ON one_time_keys (business_id);
