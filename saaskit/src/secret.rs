//! Secrets handed to clients (access tokens, one-time keys): generated from the OS's CSPRNG with
//! 256 bits of entropy, shown once, and stored only as their SHA-256 digest. A digest lookup is
//! the comparison, so there is no timing side channel on the secret itself.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore as _;
use sha2::{Digest, Sha256};

/// A freshly generated secret: the clear text (to show once) and what is stored.
pub struct NewSecret {
    pub clear: String,
    pub hash: Vec<u8>,
    /// The first characters, kept in clear so people can tell their keys apart.
    pub prefix: String,
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewSecret({}…)", self.prefix)
    }
}

/// Characters of a token kept visible in listings, its kind's marker included (`sks_AbCd1234`).
pub const VISIBLE_PREFIX_LEN: usize = 12;

/// Generates `<marker>_<43 url-safe characters>`; the marker (`sks` for sessions, …) makes
/// leaked tokens recognisable to secret scanners.
pub fn generate(marker: &str) -> NewSecret {
    let mut bytes = [0u8; 32];
    // The OS RNG only fails on a broken system; there is no safe way to go on without it.
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random number generator failed");
    let clear = if marker.is_empty() {
        URL_SAFE_NO_PAD.encode(bytes)
    } else {
        format!("{marker}_{}", URL_SAFE_NO_PAD.encode(bytes))
    };
    let prefix = clear.chars().take(VISIBLE_PREFIX_LEN).collect();
    NewSecret {
        hash: digest(&clear),
        clear,
        prefix,
    }
}

/// The stored form of a presented secret.
pub fn digest(clear: &str) -> Vec<u8> {
    Sha256::digest(clear.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_stored_hashed() {
        let a = generate("sks");
        let b = generate("sks");
        assert_ne!(a.clear, b.clear);
        assert!(a.clear.starts_with("sks_"));
        assert_eq!(a.clear.len(), 4 + 43);
        assert_eq!(a.prefix, a.clear[..VISIBLE_PREFIX_LEN]);
        assert_eq!(a.hash, digest(&a.clear));
        assert_eq!(a.hash.len(), 32);
        assert!(!format!("{a:?}").contains(&a.clear));
        assert_eq!(generate("").clear.len(), 43);
    }
}
