-- Sign in with an identity provider (OpenID Connect, GitHub): the identities linked to a
-- person, the sign-ins in flight (state looked up by digest; nonce and PKCE verifier sealed,
-- single-use, ten minutes) and the mailed confirmations that link an identity to an existing
-- account (digest only, single-use). SQLite flavour.

CREATE TABLE user_identities (
    id           BLOB PRIMARY KEY NOT NULL,
    user_id      BLOB NOT NULL REFERENCES users (id),
    -- The provider's name in SAASKIT_OIDC_PROVIDERS, and its `sub` (GitHub: the user's id).
    provider     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    email        TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    UNIQUE (provider, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

CREATE TABLE identity_sign_ins (
    id           BLOB PRIMARY KEY NOT NULL,
    state_hash   BLOB NOT NULL UNIQUE,
    provider     TEXT NOT NULL,
    -- The nonce and the PKCE verifier, sealed (seal.rs) with the row's id as context.
    secrets_sealed TEXT NOT NULL,
    -- Set when a signed-in person started it: the identity is linked to them.
    link_user_id BLOB REFERENCES users (id),
    next         TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX identity_sign_ins_expires ON identity_sign_ins (expires_at);

CREATE TABLE identity_link_keys (
    id         BLOB PRIMARY KEY NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    user_id    BLOB NOT NULL REFERENCES users (id),
    provider   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    email      TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX identity_link_keys_user ON identity_link_keys (user_id);
