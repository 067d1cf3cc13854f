//! What can be checked of the shipped deployment files without a container engine (none runs
//! where saaskit is developed): the settings they must agree on.

const COMPOSE: &str = include_str!("../../deploy/compose.yaml");
const DOCKERFILE: &str = include_str!("../../Dockerfile");
const MANIFEST: &str = include_str!("../../Cargo.toml");

/// The value of the first uncommented `key: value` line.
fn setting<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

#[test]
fn compose_trusts_exactly_its_proxy_and_builds_one_image() {
    let trusted: std::net::Ipv4Addr = setting(COMPOSE, "SAASKIT_TRUSTED_PROXIES")
        .expect("SAASKIT_TRUSTED_PROXIES is set")
        .parse()
        .expect("one address");
    let proxy: std::net::Ipv4Addr = setting(COMPOSE, "ipv4_address")
        .expect("the proxy has a fixed address")
        .parse()
        .expect("an address");
    assert_eq!(trusted, proxy, "the replicas trust the proxy's address");
    let (net, bits) = setting(COMPOSE, "- subnet")
        .and_then(|s| s.split_once('/'))
        .expect("the network's subnet");
    let net: std::net::Ipv4Addr = net.parse().expect("subnet address");
    let bits: u32 = bits.parse().expect("prefix length");
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    assert_eq!(
        u32::from(proxy) & mask,
        u32::from(net) & mask,
        "the proxy's address is on the network"
    );

    let builds = COMPOSE
        .lines()
        .filter(|l| l.trim() == "build:" && !l.trim_start().starts_with('#'))
        .count();
    assert_eq!(builds, 1, "one build, shared by the replicas");
    assert!(
        COMPOSE.contains("x-saaskit: &saaskit\n    image: saaskit:local\n"),
        "both replicas run the image the build tags"
    );
    // Mail leaves by SMTP, so whichever replica sends a message it lands in one place.
    let smtp = setting(COMPOSE, "SAASKIT_SMTP_URL").expect("SAASKIT_SMTP_URL is set");
    assert!(smtp.starts_with("smtp://mailpit:"), "{smtp}");
    assert!(
        COMPOSE.contains("\n  mailpit:\n"),
        "the SMTP server it names is a service"
    );
}

#[test]
fn the_image_builds_its_dependency_layer_with_every_workspace_member() {
    let members = MANIFEST
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("the workspace's members");
    for member in members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        let copy = format!("COPY {member}/Cargo.toml {member}/Cargo.toml");
        assert!(
            DOCKERFILE.contains(&copy),
            "the Dockerfile's dependency layer lacks the member {member} ({copy:?}): cargo refuses a workspace with a member missing"
        );
    }
}
