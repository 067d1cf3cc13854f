-- Sign-in beyond the password: TOTP two-factor (its seed sealed, see seal.rs), single-use
-- recovery codes (digests only), a business's rule that its members use a second factor, and
-- the one-time keys of a login's second step and of magic links. PostgreSQL flavour.

-- A person's authenticator: `confirmed_at` is null while set-up waits for a first code.
-- `last_step` is the newest 30-second step a code was accepted for: no code is taken twice.
CREATE TABLE user_totp (
    user_id       UUID PRIMARY KEY NOT NULL REFERENCES users (id),
    secret_sealed TEXT NOT NULL,
    confirmed_at  TIMESTAMPTZ,
    last_step     BIGINT,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE recovery_codes (
    id         UUID PRIMARY KEY NOT NULL,
    user_id    UUID NOT NULL REFERENCES users (id),
    hash       BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

ALTER TABLE businesses ADD COLUMN require_mfa BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE one_time_keys DROP CONSTRAINT one_time_keys_purpose_check;
ALTER TABLE one_time_keys ADD CONSTRAINT one_time_keys_purpose_check
    CHECK (purpose IN ('password_reset', 'invitation', 'email_verification', 'mfa_login',
                       'magic_link'));
