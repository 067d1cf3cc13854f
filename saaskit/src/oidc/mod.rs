//! The boundary with identity providers: the providers configured by settings, the address a
//! browser is sent to, and, back from it, the identity the provider vouches for. Two kinds:
//! - `oidc`, any OpenID Connect provider (Google: issuer `https://accounts.google.com`): found by
//!   discovery, authorization code with PKCE (S256), `state` and `nonce`; the ID token's
//!   signature (the provider's JWKS), issuer, audience, expiry and nonce are checked by the
//!   `openidconnect` crate.
//! - `github`, GitHub's OAuth2 (no ID token): authorization code with PKCE, then the user and
//!   their verified primary address from GitHub's API.
//!
//! The rest of the code sees [`ProvidedIdentity`] only; the rules (link, sign in, create) are
//! `accounts::identities`.

pub mod github;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};

/// How long a provider's discovery document and keys are kept before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(10 * 60);
/// The longest a call to a provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Oidc,
    Github,
}

/// One provider, as configured (`SAASKIT_OIDC_<NAME>_…`, see the README).
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Lowercase letters, digits and `-`: in addresses (`/auth/<name>/start`) and in the
    /// stored identities, so it must not change once people have linked.
    pub name: String,
    /// What the buttons say: "Sign in with <label>".
    pub label: String,
    pub kind: Kind,
    /// The issuer (`oidc`), or GitHub's web address (`https://github.com`).
    pub issuer: String,
    /// GitHub's API (`https://api.github.com`); unused by `oidc`.
    pub api_base: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ProviderSettings {
    /// An OpenID Connect provider.
    pub fn oidc(name: &str, issuer: &str, client_id: &str, client_secret: &str) -> Self {
        ProviderSettings {
            name: name.to_owned(),
            label: default_label(name),
            kind: Kind::Oidc,
            issuer: issuer.trim_end_matches('/').to_owned(),
            api_base: String::new(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
        }
    }

    /// Reads provider `name`'s settings with `var` (the environment, in the binary):
    /// `SAASKIT_OIDC_<NAME>_KIND` (`oidc`, the default, or `github`), `_ISSUER` (required for
    /// `oidc`), `_CLIENT_ID`, `_CLIENT_SECRET`, and optionally `_LABEL` and, for GitHub,
    /// `_API_BASE`.
    pub fn from_vars(
        name: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<ProviderSettings> {
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            anyhow::bail!(
                "SAASKIT_OIDC_PROVIDERS: {name:?} is not a provider name (lowercase letters, \
                 digits and -)"
            );
        }
        let prefix = format!(
            "SAASKIT_OIDC_{}_",
            name.to_ascii_uppercase().replace('-', "_")
        );
        let get = |key: &str| var(&format!("{prefix}{key}")).filter(|v| !v.trim().is_empty());
        let required = |key: &str| {
            get(key).ok_or_else(|| anyhow::anyhow!("{prefix}{key} is required for provider {name}"))
        };
        let kind = match get("KIND").as_deref().map(str::trim) {
            None | Some("oidc") => Kind::Oidc,
            Some("github") => Kind::Github,
            Some(other) => anyhow::bail!("{prefix}KIND: {other:?} is neither oidc nor github"),
        };
        let issuer = match kind {
            Kind::Oidc => required("ISSUER")?,
            Kind::Github => get("ISSUER").unwrap_or_else(|| github::WEB_BASE.to_owned()),
        };
        let settings = ProviderSettings {
            label: get("LABEL").unwrap_or_else(|| default_label(&name)),
            kind,
            issuer: issuer.trim().trim_end_matches('/').to_owned(),
            api_base: get("API_BASE")
                .unwrap_or_else(|| github::API_BASE.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            client_id: required("CLIENT_ID")?,
            client_secret: required("CLIENT_SECRET")?,
            name,
        };
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> anyhow::Result<()> {
        for url in [&self.issuer, &self.api_base]
            .into_iter()
            .filter(|u| !u.is_empty())
        {
            let parsed = openidconnect::url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("provider {}: {url:?}: {e}", self.name))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                anyhow::bail!("provider {}: {url:?} is not an http(s) URL", self.name);
            }
        }
        Ok(())
    }
}

fn default_label(name: &str) -> String {
    match name {
        "github" => "GitHub".to_owned(),
        _ => {
            let mut chars = name.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    }
}

/// What a provider says about the person who came back from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvidedIdentity {
    /// The provider's stable id for the person (`sub`; GitHub's numeric user id).
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider vouches that the person receives mail at `email`.
    pub email_verified: bool,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

/// The secrets of one sign-in between its start and its callback (kept sealed, server-side).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowSecrets {
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Where to send the browser, with what to keep until it comes back.
#[derive(Debug)]
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub secrets: FlowSecrets,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Discovery, the keys or the token endpoint failed to answer sensibly.
    #[error("the identity provider could not be reached: {0}")]
    Unavailable(String),
    /// The token endpoint refused the code (used, expired, or not for this verifier).
    #[error("the identity provider refused the authorization code: {0}")]
    CodeRefused(String),
    /// The ID token failed a check: signature, issuer, audience, expiry, nonce.
    #[error("the identity provider's ID token is not valid: {0}")]
    InvalidToken(String),
    /// The callback's `iss` (RFC 9207) names another issuer: a mix-up attack.
    #[error("the answer came from another issuer than the one asked")]
    WrongIssuer,
}

/// The providers configured, with what they need at run time (an HTTP client that never
/// follows redirects, and each one's cached discovery).
pub struct Providers {
    list: Vec<Arc<Provider>>,
    http: reqwest::Client,
}

pub struct Provider {
    pub settings: ProviderSettings,
    metadata: tokio::sync::Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

impl Providers {
    pub fn new(settings: Vec<ProviderSettings>) -> anyhow::Result<Providers> {
        let mut names = std::collections::HashSet::new();
        for s in &settings {
            s.check()?;
            if !names.insert(s.name.clone()) {
                anyhow::bail!("identity provider {:?} is configured twice", s.name);
            }
        }
        // Redirects are never followed (openidconnect's advice: no SSRF through a provider).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .user_agent("saaskit")
            .build()?;
        Ok(Providers {
            list: settings
                .into_iter()
                .map(|settings| {
                    Arc::new(Provider {
                        settings,
                        metadata: tokio::sync::Mutex::new(None),
                    })
                })
                .collect(),
            http,
        })
    }

    /// The providers of `config`: those given in `config.identity_providers` (tests,
    /// embedding) and those named by `SAASKIT_OIDC_PROVIDERS`, read from the environment.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Providers> {
        let mut settings = config.identity_providers.clone();
        for name in config
            .oidc_providers
            .iter()
            .filter(|n| !n.trim().is_empty())
        {
            settings.push(ProviderSettings::from_vars(name, |k| {
                std::env::var(k).ok()
            })?);
        }
        Providers::new(settings)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| p.settings.name == name)
    }

    pub fn all(&self) -> impl Iterator<Item = &ProviderSettings> {
        self.list.iter().map(|p| &p.settings)
    }

    /// The label of `name`, or the name itself for a provider no longer configured.
    pub fn label_of(&self, name: &str) -> String {
        self.get(name)
            .map_or_else(|| name.to_owned(), |p| p.settings.label.clone())
    }

    /// Starts a sign-in with `provider`, whose callback is `redirect`.
    pub async fn authorize(
        &self,
        provider: &Provider,
        redirect: &str,
    ) -> Result<Authorization, ProviderError> {
        let redirect = RedirectUrl::new(redirect.to_owned())
            .map_err(|e| ProviderError::Unavailable(format!("redirect URL: {e}")))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        match provider.settings.kind {
            Kind::Oidc => {
                let client = self.oidc_client(provider).await?.set_redirect_uri(redirect);
                let (url, state, nonce) = client
                    .authorize_url(
                        CoreAuthenticationFlow::AuthorizationCode,
                        CsrfToken::new_random,
                        Nonce::new_random,
                    )
                    .add_scope(Scope::new("email".into()))
                    .add_scope(Scope::new("profile".into()))
                    .set_pkce_challenge(challenge)
                    .url();
                Ok(Authorization {
                    url: url.to_string(),
                    state: state.secret().clone(),
                    secrets: FlowSecrets {
                        nonce: nonce.secret().clone(),
                        pkce_verifier: verifier.secret().clone(),
                    },
                })
            }
            Kind::Github => {
                let (url, state) = github::client(&provider.settings)?
                    .set_redirect_uri(redirect)
                    .authorize_url(CsrfToken::new_random)
                    .add_scope(Scope::new("read:user".into()))
                    .add_scope(Scope::new("user:email".into()))
                    .set_pkce_challenge(challenge)
                    .url();
                Ok(Authorization {
                    url: url.to_string(),
                    state: state.secret().clone(),
                    // GitHub has no ID token, hence no nonce; kept for a uniform record.
                    secrets: FlowSecrets {
                        nonce: String::new(),
                        pkce_verifier: verifier.secret().clone(),
                    },
                })
            }
        }
    }

    /// Finishes a sign-in: exchanges `code` (with the PKCE verifier), checks what comes back,
    /// and says who the person is. `iss`: the callback's `iss` parameter, when the provider
    /// sent one.
    pub async fn finish(
        &self,
        provider: &Provider,
        redirect: &str,
        code: &str,
        iss: Option<&str>,
        secrets: FlowSecrets,
    ) -> Result<ProvidedIdentity, ProviderError> {
        let redirect = RedirectUrl::new(redirect.to_owned())
            .map_err(|e| ProviderError::Unavailable(format!("redirect URL: {e}")))?;
        let code = AuthorizationCode::new(code.to_owned());
        let verifier = PkceCodeVerifier::new(secrets.pkce_verifier);
        match provider.settings.kind {
            Kind::Oidc => {
                let client = self.oidc_client(provider).await?.set_redirect_uri(redirect);
                // Discovery checked that the provider calls itself by the configured issuer.
                if let Some(iss) = iss
                    && iss.trim_end_matches('/') != provider.settings.issuer
                {
                    return Err(ProviderError::WrongIssuer);
                }
                let token = client
                    .exchange_code(code)
                    .map_err(|e| ProviderError::Unavailable(e.to_string()))?
                    .set_pkce_verifier(verifier)
                    .request_async(&self.http)
                    .await
                    .map_err(token_error)?;
                let id_token = token.id_token().ok_or_else(|| {
                    ProviderError::InvalidToken("the token answer has no ID token".into())
                })?;
                let claims = id_token
                    .claims(&client.id_token_verifier(), &Nonce::new(secrets.nonce))
                    .map_err(|e| ProviderError::InvalidToken(e.to_string()))?;
                let localized =
                    |c: Option<&openidconnect::LocalizedClaim<openidconnect::EndUserGivenName>>| {
                        c.and_then(|c| c.get(None)).map(|n| n.as_str().to_owned())
                    };
                Ok(ProvidedIdentity {
                    subject: claims.subject().as_str().to_owned(),
                    email: claims.email().map(|e| e.as_str().to_owned()),
                    email_verified: claims.email_verified().unwrap_or(false),
                    given_name: localized(claims.given_name()),
                    family_name: claims
                        .family_name()
                        .and_then(|c| c.get(None))
                        .map(|n| n.as_str().to_owned()),
                })
            }
            Kind::Github => {
                let token = github::client(&provider.settings)?
                    .set_redirect_uri(redirect)
                    .exchange_code(code)
                    .set_pkce_verifier(verifier)
                    .request_async(&self.http)
                    .await
                    .map_err(token_error)?;
                github::identity(
                    &self.http,
                    &provider.settings.api_base,
                    token.access_token().secret(),
                )
                .await
            }
        }
    }

    /// The provider's client, from its discovery document (fetched again after
    /// [`METADATA_TTL`], with its keys).
    async fn oidc_client(
        &self,
        provider: &Provider,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        ProviderError,
    > {
        let metadata = {
            let mut cached = provider.metadata.lock().await;
            match &*cached {
                Some((metadata, at)) if at.elapsed() < METADATA_TTL => metadata.clone(),
                _ => {
                    let issuer = IssuerUrl::new(provider.settings.issuer.clone())
                        .map_err(|e| ProviderError::Unavailable(format!("issuer: {e}")))?;
                    let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
                        .await
                        .map_err(|e| ProviderError::Unavailable(format!("discovery: {e}")))?;
                    *cached = Some((metadata.clone(), Instant::now()));
                    metadata
                }
            }
        };
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.settings.client_id.clone()),
            Some(ClientSecret::new(provider.settings.client_secret.clone())),
        ))
    }
}

/// A failed token request: refused (the provider answered with an OAuth error), or not answered.
fn token_error<RE, T>(err: openidconnect::RequestTokenError<RE, T>) -> ProviderError
where
    RE: std::error::Error + 'static,
    T: openidconnect::ErrorResponse + 'static,
{
    match err {
        openidconnect::RequestTokenError::ServerResponse(r) => {
            ProviderError::CodeRefused(r.to_string())
        }
        other => {
            // The cause's chain, for the log: "Request failed" alone says nothing.
            let mut said = other.to_string();
            let mut cause = std::error::Error::source(&other);
            while let Some(c) = cause {
                said.push_str(&format!(": {c}"));
                cause = c.source();
            }
            ProviderError::Unavailable(said)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn providers_are_read_from_their_settings() {
        let google = ProviderSettings::from_vars(
            "google",
            vars(&[
                ("SAASKIT_OIDC_GOOGLE_ISSUER", "https://accounts.google.com"),
                ("SAASKIT_OIDC_GOOGLE_CLIENT_ID", "id"),
                ("SAASKIT_OIDC_GOOGLE_CLIENT_SECRET", "secret"),
            ]),
        )
        .expect("google");
        assert_eq!(google.kind, Kind::Oidc);
        assert_eq!(google.label, "Google");
        assert_eq!(google.issuer, "https://accounts.google.com");
        assert!(!format!("{google:?}").contains("secret"), "{google:?}");

        let github = ProviderSettings::from_vars(
            "github",
            vars(&[
                ("SAASKIT_OIDC_GITHUB_KIND", "github"),
                ("SAASKIT_OIDC_GITHUB_CLIENT_ID", "id"),
                ("SAASKIT_OIDC_GITHUB_CLIENT_SECRET", "secret"),
            ]),
        )
        .expect("github");
        assert_eq!(github.kind, Kind::Github);
        assert_eq!(github.label, "GitHub");
        assert_eq!(github.issuer, "https://github.com");
        assert_eq!(github.api_base, "https://api.github.com");

        let missing = ProviderSettings::from_vars(
            "acme-sso",
            vars(&[("SAASKIT_OIDC_ACME_SSO_CLIENT_ID", "id")]),
        );
        assert!(
            missing.is_err_and(|e| e.to_string().contains("SAASKIT_OIDC_ACME_SSO_ISSUER")),
            "an oidc provider needs its issuer"
        );
        assert!(ProviderSettings::from_vars("Bad Name!", vars(&[])).is_err());
        assert!(
            ProviderSettings::from_vars(
                "x",
                vars(&[
                    ("SAASKIT_OIDC_X_KIND", "saml"),
                    ("SAASKIT_OIDC_X_ISSUER", "https://x.example"),
                ])
            )
            .is_err()
        );
    }
}
