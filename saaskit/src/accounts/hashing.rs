//! Password hashing with Argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane), on a few
//! dedicated threads so it never stalls the request executor. A login flood queues for those
//! threads instead of allocating 19 MiB per concurrent attempt, and because the work always
//! runs on the same threads, each thread hashes in one 19 MiB block it allocates once and
//! reuses. (Letting Argon2 allocate per hash grew the process by 19 MiB per login: glibc's
//! adaptive mmap threshold keeps every freed block; measured in docs/BENCHMARKS.md.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OnceCell, oneshot};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    jobs: std::sync::mpsc::Sender<Job>,
    /// A real hash of a random password, verified against when the account does not exist so
    /// that "no such email" costs the same time as "wrong password".
    decoy: Arc<OnceCell<String>>,
    verifications: Arc<AtomicU64>,
}

std::thread_local! {
    /// The hashing thread's Argon2 memory, allocated on first use and kept.
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with `params.block_count()` blocks of this thread's reusable memory (a stored hash
/// with bigger parameters than ours grows it once).
fn with_memory<T>(params: &Params, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let needed = params.block_count();
        if memory.len() < needed {
            memory.resize(needed, Block::default());
        }
        f(&mut memory[..needed])
    })
}

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: m=19456 KiB, t=2, p=1.
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PasswordHasher {
    /// `concurrency` bounds how many hashes run at once (and so the memory they take).
    pub fn new(concurrency: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..concurrency.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job, never while hashing.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => break,
                        };
                        match job {
                            Ok(job) => job(),
                            // Every hasher handle is gone: the thread ends with it.
                            Err(_) => break,
                        }
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start a password hashing thread");
            }
        }
        Self {
            jobs: tx,
            decoy: Arc::new(OnceCell::new()),
            verifications: Arc::new(AtomicU64::new(0)),
        }
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let password = password.to_owned();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            let argon = argon2();
            let mut salt_bytes = [0u8; 64];
            let salt_bytes = salt
                .decode_b64(&mut salt_bytes)
                .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            with_memory(argon.params(), |blocks| {
                argon.hash_password_into_with_memory(
                    password.as_bytes(),
                    salt_bytes,
                    &mut out,
                    blocks,
                )
            })
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
            let phc = PasswordHash {
                algorithm: argon2::ARGON2ID_IDENT,
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(argon.params())
                    .map_err(|e| anyhow::anyhow!("hash parameters: {e}"))?,
                salt: Some(salt.as_salt()),
                hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("hash output: {e}"))?),
            };
            Ok(phc.to_string())
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
            let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
                anyhow::bail!("stored password hash has no salt or output");
            };
            let algorithm = Algorithm::try_from(parsed.algorithm)
                .map_err(|e| anyhow::anyhow!("stored password hash: {e}"))?;
            let version = parsed
                .version
                .map(Version::try_from)
                .transpose()
                .map_err(|e| anyhow::anyhow!("stored password hash: {e}"))?
                .unwrap_or_default();
            let params = Params::try_from(&parsed)
                .map_err(|e| anyhow::anyhow!("stored password hash: {e}"))?;
            let argon = Argon2::new(algorithm, version, params);
            let mut salt_bytes = [0u8; 64];
            let salt_bytes = salt
                .decode_b64(&mut salt_bytes)
                .map_err(|e| anyhow::anyhow!("stored salt: {e}"))?;
            let mut out = vec![0u8; expected.len()];
            with_memory(argon.params(), |blocks| {
                argon.hash_password_into_with_memory(
                    password.as_bytes(),
                    salt_bytes,
                    &mut out,
                    blocks,
                )
            })
            .map_err(|e| anyhow::anyhow!("verifying a password: {e}"))?;
            // `Output` compares in constant time.
            Ok(Output::new(&out).is_ok_and(|actual| actual == expected))
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
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The request gave up (client gone) while queued: do not spend 20 ms on nobody.
            if done_tx.is_closed() {
                return;
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("password hashing panicked")));
            let _ = done_tx.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("password hashing threads are gone"))?;
        done_rx.await.context("password hashing thread stopped")?
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

    #[tokio::test]
    async fn hashes_are_standard_phc_strings_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::new(1);
        // Ours verify with the reference implementation…
        let ours = hasher.hash("correct horse").await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(argon2().verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon2().verify_password(b"wrong horse", &parsed).is_err());
        // …and the reference implementation's hashes (every hash stored before) verify here,
        // whatever their parameters.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon2()
            .hash_password(b"correct horse", &salt)
            .expect("reference hash")
            .to_string();
        assert!(
            hasher
                .verify("correct horse", &theirs)
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("correct hors", &theirs)
                .await
                .expect("verify")
        );
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 3, 1, None).expect("params"),
        )
        .hash_password(b"pw", &salt)
        .expect("reference hash")
        .to_string();
        assert!(hasher.verify("pw", &cheap).await.expect("verify"));
        assert!(hasher.verify("pw", "not a hash").await.is_err());
    }
}
