//! GitHub's OAuth2 (it has no OpenID Connect): the authorization code is exchanged for an
//! access token (the `oauth2` crate, with PKCE), which reads the user (`GET /user`: their
//! numeric id is the subject) and their addresses (`GET /user/emails`: only the primary one,
//! and only if GitHub verified it, counts as verified).

use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, ClientId, ClientSecret, EndpointNotSet, EndpointSet, TokenUrl};
use serde::Deserialize;

use super::{ProvidedIdentity, ProviderError, ProviderSettings};

pub const WEB_BASE: &str = "https://github.com";
pub const API_BASE: &str = "https://api.github.com";

pub(super) type Client =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

pub(super) fn client(settings: &ProviderSettings) -> Result<Client, ProviderError> {
    let url = |path: &str| format!("{}{path}", settings.issuer);
    let bad = |e: oauth2::url::ParseError| ProviderError::Unavailable(format!("GitHub URL: {e}"));
    Ok(BasicClient::new(ClientId::new(settings.client_id.clone()))
        .set_client_secret(ClientSecret::new(settings.client_secret.clone()))
        .set_auth_uri(AuthUrl::new(url("/login/oauth/authorize")).map_err(bad)?)
        .set_token_uri(TokenUrl::new(url("/login/oauth/access_token")).map_err(bad)?))
}

#[derive(Debug, Deserialize)]
pub(super) struct User {
    id: i64,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Address {
    email: String,
    primary: bool,
    verified: bool,
}

/// Who the token belongs to, from GitHub's API at `api_base`.
pub(super) async fn identity(
    http: &reqwest::Client,
    api_base: &str,
    access_token: &str,
) -> Result<ProvidedIdentity, ProviderError> {
    let get = |path: &str| {
        http.get(format!("{api_base}{path}"))
            .bearer_auth(access_token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
    };
    let unavailable = |e: reqwest::Error| ProviderError::Unavailable(format!("GitHub API: {e}"));
    let user: User = get("/user")
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(unavailable)?
        .json()
        .await
        .map_err(unavailable)?;
    let addresses: Vec<Address> = get("/user/emails")
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(unavailable)?
        .json()
        .await
        .map_err(unavailable)?;
    Ok(identity_of(user, &addresses))
}

/// The identity GitHub's answers describe: the primary address, verified only if GitHub says
/// so (another verified address is not the person's main one and is not used).
pub(super) fn identity_of(user: User, addresses: &[Address]) -> ProvidedIdentity {
    let primary = addresses.iter().find(|a| a.primary);
    let (given_name, family_name) = match user.name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => match name.rsplit_once(' ') {
            Some((given, family)) => (Some(given.to_owned()), Some(family.to_owned())),
            None => (Some(name.to_owned()), None),
        },
        _ => (None, None),
    };
    ProvidedIdentity {
        subject: user.id.to_string(),
        email: primary.map(|a| a.email.clone()),
        email_verified: primary.is_some_and(|a| a.verified),
        given_name,
        family_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(user: serde_json::Value, emails: serde_json::Value) -> ProvidedIdentity {
        let user: User = serde_json::from_value(user).expect("a GitHub user");
        let emails: Vec<Address> = serde_json::from_value(emails).expect("GitHub addresses");
        identity_of(user, &emails)
    }

    #[test]
    fn the_verified_primary_address_is_the_identitys() {
        // As GitHub answers (fields beyond ours omitted).
        let id = parse(
            serde_json::json!({"login": "octocat", "id": 583231, "name": "The Octocat",
                               "email": "octocat@github.com"}),
            serde_json::json!([
                {"email": "other@example.com", "primary": false, "verified": true,
                 "visibility": null},
                {"email": "octocat@github.com", "primary": true, "verified": true,
                 "visibility": "public"},
            ]),
        );
        assert_eq!(id.subject, "583231");
        assert_eq!(id.email.as_deref(), Some("octocat@github.com"));
        assert!(id.email_verified);
        assert_eq!(id.given_name.as_deref(), Some("The"));
        assert_eq!(id.family_name.as_deref(), Some("Octocat"));
    }

    #[test]
    fn an_unverified_primary_is_not_vouched_for_even_beside_a_verified_other() {
        let id = parse(
            serde_json::json!({"id": 1, "name": null}),
            serde_json::json!([
                {"email": "verified@example.com", "primary": false, "verified": true},
                {"email": "main@example.com", "primary": true, "verified": false},
            ]),
        );
        assert_eq!(id.email.as_deref(), Some("main@example.com"));
        assert!(!id.email_verified);
        assert_eq!(id.given_name, None);
        let none = parse(serde_json::json!({"id": 2}), serde_json::json!([]));
        assert_eq!((none.email, none.email_verified), (None, false));
    }

    #[test]
    fn the_client_points_at_githubs_endpoints() {
        let settings = ProviderSettings {
            name: "github".into(),
            label: "GitHub".into(),
            kind: super::super::Kind::Github,
            issuer: WEB_BASE.into(),
            api_base: API_BASE.into(),
            client_id: "id".into(),
            client_secret: "secret".into(),
        };
        let c = client(&settings).expect("a client");
        assert_eq!(
            c.auth_uri().as_str(),
            "https://github.com/login/oauth/authorize"
        );
        assert_eq!(
            c.token_uri().as_str(),
            "https://github.com/login/oauth/access_token"
        );
    }
}
