//! Password hashing with Argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane), on the
//! blocking thread pool so it never stalls the request executor, and behind a semaphore so a
//! login flood queues instead of allocating 19 MiB per concurrent attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the account does not exist so
    /// that "no such email" costs the same time as "wrong password".
    decoy: Arc<OnceCell<String>>,
    verifications: Arc<AtomicU64>,
}

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: m=19456 KiB, t=2, p=1.
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PasswordHasher {
    /// `concurrency` bounds how many hashes run at once (and so the memory they take).
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            decoy: Arc::new(OnceCell::new()),
            verifications: Arc::new(AtomicU64::new(0)),
        }
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let password = password.to_owned();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
        })
        .await
    }

    /// Whether `password` matches `stored` (a PHC string).
    pub async fn verify(&self, password: &str, stored: &str) -> anyhow::Result<bool> {
        let password = password.to_owned();
        let stored = stored.to_owned();
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.run(move || {
            let parsed = PasswordHash::new(&stored)
                .map_err(|e| anyhow::anyhow!("stored password hash is malformed: {e}"))?;
            Ok(argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
    }

    /// How many password verifications (decoys included) this hasher has run: every login
    /// attempt costs exactly one, whether or not the account exists.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Spends the time of a verification on nothing: for a login whose account does not exist.
    pub async fn verify_decoy(&self, password: &str) -> anyhow::Result<()> {
        let decoy = self
            .decoy
            .get_or_try_init(|| async {
                let random = crate::secret::generate("").clear;
                self.hash(&random).await
            })
            .await?;
        self.verify(password, decoy).await.map(|_| ())
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("password hasher shut down")?;
        tokio::task::spawn_blocking(work)
            .await
            .context("password hashing task failed")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let hasher = PasswordHasher::new(2);
        let a = hasher.hash("correct horse").await.expect("hash");
        let b = hasher.hash("correct horse").await.expect("hash");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher.verify("correct horse", &a).await.expect("verify"));
        assert!(!hasher.verify("wrong horse", &a).await.expect("verify"));
        hasher.verify_decoy("anything").await.expect("decoy");
    }
}
