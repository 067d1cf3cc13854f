//! Rate limits against guessing and abuse: login, signup, password reset, and the links mailed
//! with keys. Each limit is a [`Rule`] (`5/15m`: five hits per fifteen-minute window) applied
//! to a bucket (what is limited, for whom: an address, an account, an account from an
//! address). Counters live in the database, so a limit holds across every replica, and each
//! hit is one conditional statement, so parallel requests cannot slip past it: of 50 guesses
//! sent at once against a limit of 5, exactly 5 are judged and 45 are refused.
//!
//! A refusal is `429 rate_limited` with `Retry-After` (seconds until the window ends).
//! `SAASKIT_RATE_LIMIT=off` turns every limit off (load tests, benchmarks).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::Duration;
use ipnet::{IpNet, Ipv4Net};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::accounts::ClientInfo;
use crate::app::App;
use crate::db::{Conn, Timestamp};
use crate::store::rate_limits;

/// At most `limit` hits per `period_secs`-long window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limit: i64,
    pub period_secs: i64,
}

impl Rule {
    pub const fn per(limit: i64, period_secs: i64) -> Rule {
        Rule { limit, period_secs }
    }
}

impl FromStr for Rule {
    type Err = String;

    /// `N/PERIOD` where PERIOD is a number and a unit: `5/15m`, `100/1h`, `10/30s`, `3/1d`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a rate like 5/15m (hits per period: s, m, h or d)");
        let (limit, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: i64 = limit.trim().parse().map_err(|_| bad())?;
        let period_secs = period_secs(period).ok_or_else(bad)?;
        if !(1..=1_000_000_000).contains(&limit) || !(1..=366 * 86_400).contains(&period_secs) {
            return Err(bad());
        }
        Ok(Rule { limit, period_secs })
    }
}

/// A period written as a number and a unit (`30s`, `15m`, `1h`, `7d`; a bare unit is one of it),
/// in seconds.
pub fn period_secs(period: &str) -> Option<i64> {
    let period = period.trim();
    let split = period.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = period.split_at(split);
    let n: i64 = if n.is_empty() { 1 } else { n.parse().ok()? };
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit_secs)
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.limit, self.period_secs)
    }
}

/// A refusal: try again in `retry_after` seconds.
#[derive(Debug, Clone, Copy, Error)]
#[error("rate limited; retry in {retry_after} s")]
pub struct Limited {
    pub retry_after: u64,
}

/// A counted hit, which may be given back if the attempt turns out to be no abuse.
#[derive(Debug)]
pub struct Hit {
    bucket: Option<(String, Timestamp)>,
}

/// Whether rate limits apply at all (`SAASKIT_RATE_LIMIT`).
pub fn enabled(app: &App) -> bool {
    app.config.rate_limit == Switch::On
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// A bucket name with the personal part (an email) hashed: the table holds no addresses.
pub fn bucket(kind: &str, subject: &str) -> String {
    format!("{kind}:{}", digest(subject))
}

/// The bucket for `subject` from `ip`, under `bucket(kind, subject)` so both can be cleared at
/// once.
pub fn bucket_from(kind: &str, subject: &str, ip: Option<&str>) -> String {
    format!("{}:{}", bucket(kind, subject), network_of(ip))
}

/// The bucket of a client address: see [`network_of`].
pub fn address_bucket(kind: &str, ip: Option<&str>) -> String {
    bucket(kind, &network_of(ip))
}

/// What a per-address limit counts: an IPv4 address, or the /64 network of an IPv6 one (one
/// customer line or host usually has a whole /64, so counting single IPv6 addresses would give
/// an attacker 2^64 tries).
pub fn network_of(ip: Option<&str>) -> String {
    match ip.map(str::parse::<IpAddr>) {
        Some(Ok(IpAddr::V6(v6))) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
        Some(Ok(ip)) => canonical(ip).to_string(),
        Some(Err(_)) => ip.unwrap_or("-").to_owned(),
        None => "-".to_owned(),
    }
}

fn digest(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Counts a hit in `bucket` under `rule`; `Ok(Err(Limited))` when the window is full. Services
/// give their error enums a `Limited(#[from] Limited)` variant and write
/// `ratelimit::hit(…).await??`.
pub async fn hit(app: &App, rule: Rule, bucket: String) -> anyhow::Result<Result<Hit, Limited>> {
    if !enabled(app) {
        return Ok(Ok(Hit { bucket: None }));
    }
    let now = app.clock.now();
    let period_micros = rule.period_secs * 1_000_000;
    let start_micros = now.micros().div_euclid(period_micros) * period_micros;
    let window_start = Timestamp::from_micros(start_micros)
        .ok_or_else(|| anyhow::anyhow!("rate-limit window out of range"))?;
    let window_end = window_start.plus(Duration::seconds(rule.period_secs));
    let mut tx = app.db.begin().await?;
    let counted =
        rate_limits::hit(tx.conn(), &bucket, window_start, window_end, rule.limit).await?;
    tx.commit_quietly().await?;
    Ok(match counted {
        Some(_) => Ok(Hit {
            bucket: Some((bucket, window_start)),
        }),
        None => {
            let left_micros = window_end.micros() - now.micros();
            let retry_after =
                u64::try_from(((left_micros + 999_999) / 1_000_000).max(1)).unwrap_or(1);
            Err(Limited { retry_after })
        }
    })
}

/// A use of a mailed key (reset confirmation, email verification, invitation look-up or
/// acceptance) from the client's address; give the hit back when the key worked, so only
/// failures count.
pub async fn key_attempt(app: &App, client: &ClientInfo) -> anyhow::Result<Result<Hit, Limited>> {
    let bucket = address_bucket("keys-ip", client.ip.as_deref());
    hit(app, app.config.rate_limit_keys_ip, bucket).await
}

/// Forgets the failed logins counted against an account (every address's), in `c`'s
/// transaction: after a password reset, its owner is back in.
pub async fn forget_login_failures(mut c: Conn<'_>, email_key: &str) -> sqlx::Result<()> {
    rate_limits::clear(c.reborrow(), &bucket("login", email_key)).await?;
    rate_limits::clear(c, &bucket("login-any", email_key)).await
}

impl Hit {
    /// Gives the hit back: the attempt was legitimate (a login that succeeded).
    pub async fn refund(self, app: &App) -> anyhow::Result<()> {
        if let Some((bucket, window_start)) = self.bucket {
            let mut tx = app.db.begin().await?;
            rate_limits::refund(tx.conn(), &bucket, window_start).await?;
            tx.commit_quietly().await?;
        }
        Ok(())
    }
}

/// Forgets windows that ended more than a day ago; run by the background jobs.
pub async fn purge(app: &App) -> anyhow::Result<u64> {
    let mut tx = app.db.begin().await?;
    let n = rate_limits::purge(tx.conn(), app.clock.now().plus(Duration::days(-1))).await?;
    tx.commit_quietly().await?;
    Ok(n)
}

/// Addresses and networks (`10.0.0.0/8`, `::1`) whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.split_once('/') {
                None => IpNet::from(part.parse::<IpAddr>().map_err(|_| not_an_address(part))?),
                Some((addr, _)) => part.parse::<IpNet>().map_err(|_| {
                    // ipnet's one error for both: tell the operator which half is wrong.
                    match addr.parse::<IpAddr>() {
                        Ok(_) => format!("{part:?} has a bad prefix length"),
                        Err(_) => not_an_address(part),
                    }
                })?,
            };
            nets.push(canonical_net(net.trunc()));
        }
        Ok(TrustedProxies(nets))
    }
}

fn not_an_address(part: &str) -> String {
    format!("{part:?} is not an IP address or network")
}

/// A network of IPv4-mapped IPv6 addresses (`::ffff:10.0.0.0/104`) as the IPv4 network it is,
/// since the addresses it is matched against are made IPv4 by [`canonical`] first.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        net => net,
    }
}

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_address(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.contains(peer) {
            return canonical(peer);
        }
        let Some(header) = forwarded_for else {
            return canonical(peer);
        };
        let mut client = canonical(peer);
        for hop in header.rsplit(',').map(str::trim) {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = canonical(ip);
                    if !self.contains(ip) {
                        break;
                    }
                }
                // A garbled entry: trust nothing further left of it.
                Err(_) => break,
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_as_hits_per_period() {
        assert_eq!(
            "5/15m".parse(),
            Ok(Rule {
                limit: 5,
                period_secs: 900
            })
        );
        assert_eq!(
            "100/h".parse(),
            Ok(Rule {
                limit: 100,
                period_secs: 3600
            })
        );
        assert_eq!(
            " 3 / 1d ".parse(),
            Ok(Rule {
                limit: 3,
                period_secs: 86_400
            })
        );
        for bad in [
            "", "5", "5/", "/1m", "0/1m", "5/0m", "5/1y", "x/1m", "5/m1", "-1/1m",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_client_address_is_forwarded_only_by_trusted_proxies() {
        let trusted: TrustedProxies = "10.0.0.0/8, ::1".parse().expect("valid");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // An untrusted peer's header is ignored: anyone can write it.
        assert_eq!(
            trusted.client_address(ip("203.0.113.9"), Some("1.2.3.4")),
            ip("203.0.113.9")
        );
        // A trusted proxy's: the nearest untrusted hop.
        assert_eq!(
            trusted.client_address(ip("10.1.2.3"), Some("6.6.6.6, 198.51.100.7, 10.9.9.9")),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client_address(ip("::1"), Some("198.51.100.7")),
            ip("198.51.100.7")
        );
        assert_eq!(trusted.client_address(ip("10.1.2.3"), None), ip("10.1.2.3"));
        assert_eq!(
            trusted.client_address(ip("10.1.2.3"), Some("junk, 10.0.0.2")),
            ip("10.0.0.2")
        );
        assert_eq!(
            trusted.client_address(ip("::ffff:10.0.0.1"), Some("198.51.100.7")),
            ip("198.51.100.7")
        );
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("nonsense".parse::<TrustedProxies>().is_err());
        assert_eq!("".parse::<TrustedProxies>(), Ok(TrustedProxies::default()));
    }

    #[test]
    fn trusted_networks_match_by_prefix_whatever_their_spelling() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let trusted = |s: &str| s.parse::<TrustedProxies>().expect("valid");
        // Host bits past the prefix are ignored, as in any CIDR list.
        assert!(trusted("10.1.2.3/8").contains(ip("10.200.0.1")));
        assert!(!trusted("10.1.2.3/8").contains(ip("11.0.0.1")));
        assert!(trusted("192.168.1.0/23").contains(ip("192.168.0.255")));
        assert!(!trusted("192.168.1.0/23").contains(ip("192.168.2.0")));
        assert!(trusted("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(trusted("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!trusted("2001:db8::/32").contains(ip("2001:db9::1")));
        // A bare address is itself only.
        assert!(trusted("10.0.0.1").contains(ip("10.0.0.1")));
        assert!(!trusted("10.0.0.1").contains(ip("10.0.0.2")));
        // IPv4 written as IPv4-mapped IPv6, on either side, is IPv4 (such an entry used to
        // panic on the first request).
        assert!(trusted("::ffff:10.0.0.1").contains(ip("10.0.0.1")));
        assert!(trusted("::ffff:10.0.0.0/104").contains(ip("10.9.9.9")));
        assert!(trusted("::ffff:10.0.0.0/104").contains(ip("::ffff:10.9.9.9")));
        assert!(!trusted("::ffff:10.0.0.0/104").contains(ip("11.0.0.1")));
        assert_eq!(trusted("::ffff:10.0.0.0/104"), trusted("10.0.0.0/8"));
        // An IPv6 network does not take in IPv4 clients, nor the reverse.
        assert!(!trusted("::/0").contains(ip("10.0.0.1")));
        assert!(!trusted("0.0.0.0/0").contains(ip("::1")));
    }

    #[test]
    fn a_bad_trusted_proxy_says_which_part_is_wrong() {
        let err = |s: &str| s.parse::<TrustedProxies>().expect_err(s);
        assert_eq!(
            err("10.0.0.0/33"),
            "\"10.0.0.0/33\" has a bad prefix length"
        );
        assert_eq!(err("::1/129"), "\"::1/129\" has a bad prefix length");
        assert_eq!(err("10.0.0.0/x"), "\"10.0.0.0/x\" has a bad prefix length");
        assert_eq!(err("10.0.0.0/"), "\"10.0.0.0/\" has a bad prefix length");
        assert_eq!(
            err("10.0.0/8"),
            "\"10.0.0/8\" is not an IP address or network"
        );
        assert_eq!(
            err("proxy.internal"),
            "\"proxy.internal\" is not an IP address or network"
        );
        // One bad entry refuses the whole list: a typo must not silently trust less.
        assert!("10.0.0.0/8, nonsense".parse::<TrustedProxies>().is_err());
    }
}
