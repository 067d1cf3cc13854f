//! Stripe's webhook signatures: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, where
//! each `v1` is the hex HMAC-SHA256, under the endpoint's signing secret, of `{t}.{raw body}`.
//! Stripe sends one `v1` per live secret while an endpoint's secret is rolled, and `v0` (test
//! mode's legacy scheme) is ignored, as Stripe's own libraries do.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// How far the signed timestamp may be from our clock, either way.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing or has no timestamp and v1 signature")]
    Malformed,
    #[error("the signed timestamp is more than 5 minutes away from now")]
    Stale,
    #[error("no v1 signature matches a configured secret")]
    Mismatch,
}

/// Checks `header` against `body` with any of `secrets` at `now` (unix seconds).
pub fn verify(
    header: &str,
    body: &[u8],
    secrets: &[String],
    now: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = value.parse::<i64>().ok(),
            "v1" => {
                if let Ok(bytes) = hex::decode(value) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return Err(SignatureError::Malformed);
    };
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matches = secrets.iter().any(|secret| {
        signatures.iter().any(|signature| {
            mac(secret, timestamp, body)
                // Compared in constant time.
                .verify_slice(signature)
                .is_ok()
        })
    });
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    // Checked after the signature, so a forged header cannot learn what our clock says.
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // The whole secret, `whsec_` included, is the key (unlike Standard Webhooks).
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// A header as Stripe would send it for `body` at `timestamp` (for tests and the simulator's
/// replays).
pub fn header_for(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let signature = hex::encode(mac(secret, timestamp, body).finalize().into_bytes());
    format!("t={timestamp},v1={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
    const NOW: i64 = 1_700_000_000;

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Stripe's documented scheme, computed here step by step: HMAC-SHA256 keyed with the
    /// secret's bytes over `t.body`, hex-encoded.
    #[test]
    fn a_signature_made_by_the_documented_scheme_verifies() {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(format!("{NOW}.").as_bytes());
        mac.update(BODY);
        let expected = hex::encode(mac.finalize().into_bytes());
        let header = format!("t={NOW},v1={expected}");
        assert_eq!(header, header_for(SECRET, NOW, BODY));
        assert_eq!(verify(&header, BODY, &secrets(&[SECRET]), NOW), Ok(()));
    }

    /// A known answer, so that the scheme itself (not only its round trip) is pinned:
    /// `printf '1700000000.{"id":"evt_1","object":"event"}' | openssl dgst -sha256 -hmac whsec_test_secret`.
    #[test]
    fn the_signature_is_the_known_hex_hmac() {
        assert_eq!(
            header_for(SECRET, NOW, BODY),
            "t=1700000000,v1=0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd"
        );
    }

    #[test]
    fn any_of_several_v1_values_and_any_configured_secret_is_enough() {
        let good = header_for(SECRET, NOW, BODY);
        let other = header_for("whsec_other", NOW, BODY);
        let v1 = |h: &str| h.split_once(",v1=").expect("v1").1.to_owned();
        // Stripe signs with the old and the new secret while a secret is rolled.
        let both = format!("t={NOW},v1={},v1={},v0=deadbeef", v1(&other), v1(&good));
        assert_eq!(verify(&both, BODY, &secrets(&[SECRET]), NOW), Ok(()));
        // We may be configured with two secrets during our own rotation.
        assert_eq!(
            verify(&good, BODY, &secrets(&["whsec_new", SECRET]), NOW),
            Ok(())
        );
    }

    #[test]
    fn a_changed_body_a_wrong_secret_or_a_stale_time_is_refused() {
        let header = header_for(SECRET, NOW, BODY);
        assert_eq!(
            verify(&header, b"{}", &secrets(&[SECRET]), NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, BODY, &secrets(&["whsec_x"]), NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, BODY, &[], NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, BODY, &secrets(&[SECRET]), NOW + TOLERANCE_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&header, BODY, &secrets(&[SECRET]), NOW - TOLERANCE_SECS - 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&header, BODY, &secrets(&[SECRET]), NOW + TOLERANCE_SECS),
            Ok(())
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in ["", "t=1", "v1=abcd", "t=x,v1=abcd", "garbage", "t=1,v1=zz"] {
            assert_eq!(
                verify(header, BODY, &secrets(&[SECRET]), NOW),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }
}
