//! SSRF protection for webhook destinations: which addresses a webhook may never reach (loopback,
//! private, link-local, cloud metadata, reserved…), the check of a URL when an endpoint is
//! registered, and the HTTP client that enforces the same rule on every connection it opens.
//!
//! Registration alone cannot be trusted: a name may later resolve elsewhere (DNS rebinding). So
//! the delivery client resolves through [`GuardedResolver`], which only hands the connector the
//! addresses it has checked, and the delivery code calls [`literal_forbidden`] for IP-literal
//! URLs, which never reach a resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

/// Longest URL accepted for an endpoint.
pub const MAX_URL_LEN: usize = 2000;

/// How long registration waits for DNS before accepting the name unresolved.
const REGISTRATION_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// IPv4 networks that are not the public Internet (IANA special-purpose registry).
const FORBIDDEN_V4: &[(Ipv4Addr, u32)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // carrier-grade NAT
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local, cloud metadata
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // deprecated 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, and the broadcast address
];

/// IPv6 networks inside global unicast (2000::/3) that are not the public Internet; everything
/// outside 2000::/3 is refused wholesale, bar the forms that embed an IPv4 address.
const FORBIDDEN_V6_GLOBAL: &[(Ipv6Addr, u32)] = &[
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments: Teredo, benchmarking, ORCHID
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
];

fn in_v4(ip: Ipv4Addr, (net, len): (Ipv4Addr, u32)) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, (net, len): (Ipv6Addr, u32)) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn v4_from(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

/// Whether a webhook must never be delivered to `ip`: anything but the public Internet.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => FORBIDDEN_V4.iter().any(|&net| in_v4(ip, net)),
        IpAddr::V6(ip) => is_forbidden_v6(ip),
    }
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let s = ip.segments();
    // Forms that carry an IPv4 address reach that address, so they are judged by it:
    // IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16.
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => {
            return is_forbidden(v4_from(hi, lo).into());
        }
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return is_forbidden(v4_from(hi, lo).into()),
        [0x2002, hi, lo, ..] => return is_forbidden(v4_from(hi, lo).into()),
        _ => {}
    }
    // Outside 2000::/3 lie unique-local fc00::/7 (AWS metadata fd00:ec2::254), link-local
    // fe80::/10, site-local, multicast ff00::/8, local NAT64 64:ff9b:1::/48, discard 100::/64…
    let global_unicast = s[0] & 0xe000 == 0x2000;
    !global_unicast || FORBIDDEN_V6_GLOBAL.iter().any(|&net| in_v6(ip, net))
}

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("not a valid absolute URL with a host of at most {MAX_URL_LEN} characters")]
    Invalid,
    #[error("the URL must use https")]
    SchemeNotAllowed,
    #[error("the URL leads to {0}, a private or reserved address webhooks may not reach")]
    Forbidden(IpAddr),
    #[error("the URL's host name does not resolve")]
    Unresolvable,
    #[error("the URL must not contain a user name or password")]
    HasCredentials,
}

/// Checks a webhook URL when an endpoint is registered or changed.
///
/// The scheme must be https (http too when `allow_private`, for development against a local
/// receiver), with a host and no credentials. Unless `allow_private`, an IP-literal host must be
/// public, and a name is refused if *any* of its addresses is forbidden (`localhost`, a name
/// pointing at a metadata service).
///
/// A name that does not resolve (or not within a few seconds) is accepted: the receiver's DNS
/// may simply not be set up yet, and nothing is sent at registration. This is safe because
/// delivery checks again at connection time through [`GuardedResolver`]; so this function never
/// returns [`UrlProblem::Unresolvable`], which is left for the delivery side to report.
pub async fn check_url(url: &str, allow_private: bool) -> Result<Url, UrlProblem> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlProblem::Invalid);
    }
    let url = Url::parse(url).map_err(|_| UrlProblem::Invalid)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlProblem::SchemeNotAllowed),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::HasCredentials);
    }
    let Some(name) = url.host_str() else {
        return Err(UrlProblem::Invalid);
    };
    if allow_private {
        return Ok(url);
    }
    if let Some(ip) = literal_ip(&url) {
        return refuse_if_forbidden(ip).map(|()| url);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::net::lookup_host((name, port));
    if let Ok(Ok(addrs)) = tokio::time::timeout(REGISTRATION_LOOKUP_TIMEOUT, lookup).await {
        for addr in addrs {
            refuse_if_forbidden(addr.ip())?;
        }
    }
    Ok(url)
}

fn refuse_if_forbidden(ip: IpAddr) -> Result<(), UrlProblem> {
    if is_forbidden(ip) {
        Err(UrlProblem::Forbidden(ip))
    } else {
        Ok(())
    }
}

/// The forbidden address an IP-literal URL names, if it does. reqwest connects to a literal
/// without asking the resolver, so delivery must call this before every request.
pub fn literal_forbidden(url: &Url) -> Option<IpAddr> {
    literal_ip(url).filter(|&ip| is_forbidden(ip))
}

/// The address of an IP-literal host. The URL parser has already turned every numeric spelling
/// of an IPv4 address (`0x7f000001`, `2130706433`) into dotted form for http(s), so a name that
/// is not a literal never parses as one here.
fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    unbracketed.parse().ok()
}

/// A DNS resolver for reqwest that only yields public addresses, so the connection goes to an
/// address that was checked — whatever the name resolved to at registration.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver;

/// The error of a name that resolves, but only to forbidden addresses.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to private addresses")]
pub struct OnlyPrivateAddresses(pub String);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts in the URL's port.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| !is_forbidden(addr.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(OnlyPrivateAddresses(host).into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client that delivers webhooks: short timeouts, no redirects (a redirect could lead
/// anywhere, and a receiver has no reason to send one), and unless `allow_private`, the
/// [`GuardedResolver`].
pub fn client(allow_private: bool) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(redirect::Policy::none())
        .user_agent(concat!("saaskit-webhooks/", env!("CARGO_PKG_VERSION")));
    if !allow_private {
        // Through a proxy (HTTP_PROXY…) the resolver would only see the proxy's name, and the
        // proxy would reach the destination unchecked.
        builder = builder.dns_resolver(Arc::new(GuardedResolver)).no_proxy();
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_reserved_addresses_are_forbidden() {
        let forbidden = [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:a00:1::",
            "2002:7f00:1::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
            "100::1",
        ];
        for ip in forbidden {
            assert!(
                is_forbidden(ip.parse().unwrap()),
                "{ip} should be forbidden"
            );
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        let allowed = [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for ip in allowed {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[tokio::test]
    async fn plain_http_needs_allow_private() {
        assert_eq!(
            check_url("http://example.com/hook", false).await,
            Err(UrlProblem::SchemeNotAllowed)
        );
        assert_eq!(
            check_url("ftp://example.com/hook", true).await,
            Err(UrlProblem::SchemeNotAllowed)
        );
    }

    #[tokio::test]
    async fn private_ip_literals_are_refused() {
        assert_eq!(
            check_url("https://127.0.0.1/x", false).await,
            Err(UrlProblem::Forbidden("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            check_url("https://[::1]/", false).await,
            Err(UrlProblem::Forbidden("::1".parse().unwrap()))
        );
        assert_eq!(
            check_url("https://[::ffff:10.0.0.1]/", false).await,
            Err(UrlProblem::Forbidden("::ffff:10.0.0.1".parse().unwrap()))
        );
        // The URL parser normalises numeric hosts, so spelling loopback differently does not help.
        assert_eq!(
            check_url("https://0x7f000001/", false).await,
            Err(UrlProblem::Forbidden("127.0.0.1".parse().unwrap()))
        );
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        assert!(matches!(
            check_url("https://localhost/", false).await,
            Err(UrlProblem::Forbidden(ip)) if ip.is_loopback()
        ));
    }

    #[tokio::test]
    async fn credentials_in_the_url_are_refused() {
        for url in [
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "https://:pw@example.com/",
        ] {
            assert_eq!(
                check_url(url, false).await,
                Err(UrlProblem::HasCredentials),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn malformed_and_overlong_urls_are_invalid() {
        assert_eq!(
            check_url("not a url", false).await,
            Err(UrlProblem::Invalid)
        );
        assert_eq!(
            check_url("/relative", false).await,
            Err(UrlProblem::Invalid)
        );
        let long = format!("https://93.184.216.34/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(check_url(&long, false).await, Err(UrlProblem::Invalid));
    }

    #[tokio::test]
    async fn public_literals_and_unresolvable_names_are_accepted() {
        assert!(check_url("https://93.184.216.34/hook", false).await.is_ok());
        // `.invalid` never resolves (RFC 6761); delivery re-checks when it connects.
        assert!(
            check_url("https://receiver.invalid/hook", false)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn allow_private_accepts_local_receivers() {
        let url = check_url("http://127.0.0.1:9/", true).await.unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/");
        assert!(check_url("http://localhost:8080/hook", true).await.is_ok());
    }

    #[test]
    fn literal_forbidden_flags_only_private_literals() {
        let check = |url: &str| literal_forbidden(&Url::parse(url).unwrap());
        assert_eq!(
            check("https://10.0.0.1/"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            check("https://[fd00:ec2::254]/"),
            Some("fd00:ec2::254".parse().unwrap())
        );
        assert_eq!(check("https://8.8.8.8/"), None);
        assert_eq!(check("https://localhost/"), None);
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_with_only_private_addresses() {
        let name: Name = "localhost".parse().unwrap();
        let err = match GuardedResolver.resolve(name).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err,
        };
        assert!(err.is::<OnlyPrivateAddresses>(), "{err}");
        assert_eq!(
            err.to_string(),
            "localhost resolves only to private addresses"
        );
    }

    #[tokio::test]
    async fn the_guarded_client_does_not_connect_to_private_names() {
        let client = client(false).unwrap();
        let err = client.get("http://localhost:9/").send().await.unwrap_err();
        let mut source: Option<&dyn std::error::Error> = Some(&err);
        let mut refused = false;
        while let Some(e) = source {
            refused |= e.is::<OnlyPrivateAddresses>();
            source = e.source();
        }
        assert!(refused, "{err:?}");
    }

    #[test]
    fn both_clients_build() {
        assert!(client(true).is_ok());
        assert!(client(false).is_ok());
    }
}
