-- Passkeys (WebAuthn): a person's registered credentials, the random handle their
-- authenticators know them by (not their account id), and the ceremonies in flight (the
-- server's half of a registration or a sign-in, sealed, single-use, five minutes).
-- PostgreSQL flavour.

ALTER TABLE users ADD COLUMN webauthn_handle UUID;
CREATE UNIQUE INDEX users_webauthn_handle ON users (webauthn_handle)
    WHERE webauthn_handle IS NOT NULL;

CREATE TABLE passkeys (
    id            UUID PRIMARY KEY NOT NULL,
    user_id       UUID NOT NULL REFERENCES users (id),
    -- base64url, as authenticators present it.
    credential_id TEXT NOT NULL UNIQUE,
    -- The credential's public key and counters (webauthn-rs' `Passkey`): nothing secret.
    credential    TEXT NOT NULL,
    name          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ
);
CREATE INDEX passkeys_user ON passkeys (user_id);

CREATE TABLE passkey_ceremonies (
    id           UUID PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('registration', 'sign_in')),
    user_id      UUID REFERENCES users (id),
    state_sealed TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    used_at      TIMESTAMPTZ
);
