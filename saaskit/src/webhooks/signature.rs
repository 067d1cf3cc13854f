//! Standard Webhooks signing: endpoint secrets (`whsec_` + base64 of 32 random bytes) and the
//! `webhook-signature` header, `v1,` + base64 of HMAC-SHA256 over `{msg_id}.{timestamp}.{body}`,
//! one signature per live secret so a receiver keeps verifying through a rotation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use rand::TryRngCore as _;
use sha2::Sha256;

const SECRET_PREFIX: &str = "whsec_";

/// A fresh endpoint secret: `whsec_` + standard base64 of 32 bytes from the OS's CSPRNG.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    // The OS RNG only fails on a broken system; there is no safe way to go on without it.
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random number generator failed");
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The HMAC key inside a secret, or `None` when it is not standard base64 of at least one byte.
///
/// The `whsec_` prefix may be missing: the reference libraries accept both forms, and receivers
/// configured with either must agree with us about the key.
pub fn secret_bytes(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(encoded).ok().filter(|key| !key.is_empty())
}

/// One signature, `v1,<base64>`, or `None` when the secret does not decode.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = secret_bytes(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header value: the signatures under each secret, space-separated
/// (during a rotation the old and the new). A secret that does not decode is left out rather than
/// failing the delivery, since the others still let the receiver verify.
pub fn signature_header(secrets: &[&str], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|secret| sign(secret, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The specification's published test vector, reproduced by every reference library.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signing_reproduces_the_specification_test_vector() {
        assert_eq!(
            sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY).as_deref(),
            Some(SPEC_SIGNATURE)
        );
    }

    #[test]
    fn the_secret_prefix_is_optional() {
        let bare = SPEC_SECRET.strip_prefix("whsec_").unwrap();
        assert_eq!(
            sign(bare, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY).as_deref(),
            Some(SPEC_SIGNATURE)
        );
    }

    #[test]
    fn new_secrets_are_prefixed_random_32_byte_keys() {
        let a = new_secret();
        let b = new_secret();
        assert!(a.starts_with("whsec_"), "{a}");
        assert_eq!(secret_bytes(&a).map(|key| key.len()), Some(32));
        assert_ne!(a, b);
    }

    #[test]
    fn secrets_that_do_not_decode_sign_nothing() {
        for bad in [
            "",
            "whsec_",
            "whsec_not base64!",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw-_",
        ] {
            assert_eq!(secret_bytes(bad), None, "{bad:?}");
            assert_eq!(
                sign(bad, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY),
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_part_of_the_message_is_signed() {
        let base = sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY);
        assert_ne!(
            base,
            sign(SPEC_SECRET, "msg_other", SPEC_TIMESTAMP, SPEC_BODY)
        );
        assert_ne!(
            base,
            sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP + 1, SPEC_BODY)
        );
        assert_ne!(base, sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, b"{}"));
        assert_ne!(
            base,
            sign(&new_secret(), SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)
        );
    }

    #[test]
    fn the_header_carries_one_signature_per_secret_during_a_rotation() {
        let new = new_secret();
        let header = signature_header(&[SPEC_SECRET, &new], SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY);
        let expected = format!(
            "{SPEC_SIGNATURE} {}",
            sign(&new, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY).unwrap()
        );
        assert_eq!(header, expected);
    }

    #[test]
    fn the_header_leaves_out_secrets_that_do_not_decode() {
        let header = signature_header(
            &["whsec_!", SPEC_SECRET],
            SPEC_MSG_ID,
            SPEC_TIMESTAMP,
            SPEC_BODY,
        );
        assert_eq!(header, SPEC_SIGNATURE);
        assert_eq!(
            signature_header(&[], SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY),
            ""
        );
    }
}
