//! Sealing: the few secrets saaskit must read back later (a mailed link waiting in the outbox;
//! later TOTP seeds and webhook secrets) are stored encrypted with XChaCha20-Poly1305 under one
//! key, never in clear, so neither a table, a free page, a WAL frame nor a dead PostgreSQL tuple
//! holds a usable secret. Tokens and keys we only compare are digests instead (`secret.rs`).
//!
//! The key comes from `SAASKIT_SECRET_KEY`, or else from a key file (`SAASKIT_SECRET_KEY_FILE`,
//! by default beside the SQLite database) created with owner-only permissions on first run.
//! Older keys stay readable (`SAASKIT_SECRET_KEY_OLD`, or the key file's later lines) so that a
//! rotation can re-seal at leisure: [`Sealer::reseal`] opens with whichever key sealed a value
//! and seals it again under the current one.
//!
//! A sealed value is text, `sk1.<key id>.<base64url(nonce ‖ ciphertext)>`, bound by its
//! associated data to the column and row it belongs to, so one row's sealed body cannot be
//! moved into another's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::TryRngCore as _;
use sha2::{Digest, Sha256};

const PREFIX: &str = "sk1.";
const NONCE_LEN: usize = 24;

/// 32 bytes of key material, written as base64 (standard or URL-safe, padded or not).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id())
    }
}

impl std::str::FromStr for SecretKey {
    type Err = String;

    fn from_str(s: &str) -> Result<SecretKey, String> {
        let s = s.trim();
        let bytes = URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(s))
            .map_err(|_| {
                "a secret key is 32 random bytes in base64 (`saaskit secret-key generate` makes one)"
                    .to_owned()
            })?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "a secret key is 32 bytes in base64, this one is {} bytes",
                b.len()
            )
        })?;
        Ok(SecretKey(key))
    }
}

impl SecretKey {
    /// A key for another use, derived from this one (HMAC-SHA256 of the use's name).
    fn derive(&self, purpose: &str) -> [u8; 32] {
        mac_with(&self.0, purpose, b"")
    }

    /// A new key from the operating system's random number generator.
    pub fn generate() -> SecretKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut key)
            .expect("the operating system's random number generator failed");
        SecretKey(key)
    }

    /// The key as it is written in settings and key files.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// A public name for the key (not secret: a digest of it), stored with each sealed value so
    /// the right key opens it.
    pub fn id(&self) -> String {
        let digest = Sha256::digest([b"saaskit key id:".as_slice(), &self.0].concat());
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Where the keys come from, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `SAASKIT_SECRET_KEY` (and `SAASKIT_SECRET_KEY_OLD`).
    Setting,
    /// A key file: the first line is the current key, later lines older keys kept for reading.
    File(PathBuf),
}

/// Seals and opens secrets. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    inner: Arc<Keys>,
}

struct Keys {
    /// The key new values are sealed with, first; then older keys, for reading only.
    keys: Vec<(String, XChaCha20Poly1305)>,
    /// A key for message authentication codes derived from each of `keys`, in the same order
    /// (never the sealing key itself: one key, one use).
    mac_keys: Vec<[u8; 32]>,
    source: KeySource,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current_id())
            .field("source", &self.inner.source)
            .finish()
    }
}

/// A sealed value that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "sealed with key {0}, which is not configured (SAASKIT_SECRET_KEY_OLD or the key file's older lines)"
    )]
    UnknownKey(String),
    #[error("the sealed value is damaged or belongs elsewhere")]
    Damaged,
}

type HmacSha256 = hmac::Hmac<Sha256>;

fn hmac_for(key: &[u8; 32], purpose: &str) -> HmacSha256 {
    use hmac::Mac as _;
    // HMAC takes a key of any length; 32 bytes cannot be refused.
    let mut m = <HmacSha256 as hmac::Mac>::new_from_slice(key).expect("HMAC takes any key length");
    // The purpose, length-prefixed, separates the uses of one key.
    m.update(&(purpose.len() as u64).to_be_bytes());
    m.update(purpose.as_bytes());
    m
}

fn mac_with(key: &[u8; 32], purpose: &str, message: &[u8]) -> [u8; 32] {
    use hmac::Mac as _;
    let mut m = hmac_for(key, purpose);
    m.update(message);
    m.finalize().into_bytes().into()
}

impl Sealer {
    /// A sealer over `current` (sealing and reading) and `older` keys (reading only).
    pub fn new(current: SecretKey, older: &[SecretKey], source: KeySource) -> Sealer {
        let mut keys = vec![(current.id(), XChaCha20Poly1305::new((&current.0).into()))];
        let mut mac_keys = vec![current.derive("saaskit mac v1")];
        for key in older {
            if !keys.iter().any(|(id, _)| *id == key.id()) {
                keys.push((key.id(), XChaCha20Poly1305::new((&key.0).into())));
                mac_keys.push(key.derive("saaskit mac v1"));
            }
        }
        Sealer {
            inner: Arc::new(Keys {
                keys,
                mac_keys,
                source,
            }),
        }
    }

    /// The sealer the configuration asks for: the key setting, else the key file (created, with
    /// a new key and owner-only permissions, when it does not exist yet).
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Sealer> {
        if let Some(current) = &config.secret_key {
            return Ok(Sealer::new(
                current.clone(),
                &config.secret_key_old,
                KeySource::Setting,
            ));
        }
        let path = key_file_path(config);
        if crate::db::sqlite_file(&config.database_url).is_none() {
            tracing::warn!(path = %path.display(), "SAASKIT_SECRET_KEY is not set: sealing with a key file; every replica must share it (set SAASKIT_SECRET_KEY in production)");
        }
        let keys = load_or_create_key_file(&path)?;
        let (current, older) = keys
            .split_first()
            .with_context(|| format!("the key file {} holds no key", path.display()))?;
        Ok(Sealer::new(
            current.clone(),
            older,
            KeySource::File(path.clone()),
        ))
    }

    pub fn source(&self) -> &KeySource {
        &self.inner.source
    }

    /// A code authenticating `message` for `purpose` (HMAC-SHA256 under a key derived from the
    /// current one): a form's CSRF token, say. Anyone may read it; only the holder of the key
    /// can make one.
    pub fn mac(&self, purpose: &str, message: &[u8]) -> [u8; 32] {
        mac_with(&self.inner.mac_keys[0], purpose, message)
    }

    /// Whether `code` is [`Sealer::mac`]'s for `message` under the current key or an older one
    /// (a rotation does not void what was made just before it). Compared in constant time.
    pub fn verify_mac(&self, purpose: &str, message: &[u8], code: &[u8]) -> bool {
        use hmac::Mac as _;
        self.inner.mac_keys.iter().any(|key| {
            let mut m = hmac_for(key, purpose);
            m.update(message);
            m.verify_slice(code).is_ok()
        })
    }

    /// The id of the key new values are sealed with.
    pub fn current_id(&self) -> &str {
        &self.inner.keys[0].0
    }

    /// Seals `clear` for the place named by `context` (a column and a row id, say).
    pub fn seal(&self, clear: &str, context: &[u8]) -> String {
        let (id, cipher) = &self.inner.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut nonce)
            .expect("the operating system's random number generator failed");
        // Encryption only fails for inputs of about 256 GiB; a mail body is not one.
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: clear.as_bytes(),
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a bounded input");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{id}.{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Opens a value sealed for `context`. A value without the sealed prefix is returned as it
    /// is: rows written before sealing existed (and empty, already-sent bodies).
    pub fn open(&self, stored: &str, context: &[u8]) -> Result<String, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, body) = rest.split_once('.').ok_or(OpenError::Damaged)?;
        let (_, cipher) = self
            .inner
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| OpenError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError::Damaged);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let clear = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .map_err(|_| OpenError::Damaged)?;
        String::from_utf8(clear).map_err(|_| OpenError::Damaged)
    }

    /// Whether `stored` is already sealed under the current key (nothing to re-seal).
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(id, _)| id == self.current_id())
    }

    /// `stored` sealed again under the current key, or `None` when it already is (an empty
    /// value stays empty: there is nothing in it to protect).
    pub fn reseal(&self, stored: &str, context: &[u8]) -> Result<Option<String>, OpenError> {
        if stored.is_empty() || self.is_current(stored) {
            return Ok(None);
        }
        let clear = self.open(stored, context)?;
        Ok(Some(self.seal(&clear, context)))
    }
}

/// The key file the configuration names: `SAASKIT_SECRET_KEY_FILE`, else `<database file>.key`
/// beside a SQLite database, else `saaskit.key` in the working folder (PostgreSQL: every replica
/// must then be given the same file, or better `SAASKIT_SECRET_KEY`).
pub fn key_file_path(config: &crate::config::Config) -> PathBuf {
    if let Some(path) = &config.secret_key_file {
        return path.clone();
    }
    match crate::db::sqlite_file(&config.database_url) {
        Some(db) => {
            let mut name = db.file_name().unwrap_or_default().to_os_string();
            name.push(".key");
            db.with_file_name(name)
        }
        None => PathBuf::from("saaskit.key"),
    }
}

/// Reads the keys of a key file, creating it with one new key when it does not exist.
pub fn load_or_create_key_file(path: &Path) -> anyhow::Result<Vec<SecretKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key_file(&text)
            .with_context(|| format!("reading the key file {}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            // Two processes starting at once (replicas sharing a volume) must end up with one
            // key: the file appears by a link that fails if another got there first.
            let tmp = write_temporary(path, std::slice::from_ref(&key))?;
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    tracing::info!(path = %path.display(), key_id = %key.id(), "created a new secret key file (keep it apart from backups of the database)");
                    Ok(vec![key])
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_key_file(path)
                }
                Err(err) => {
                    Err(err).with_context(|| format!("creating the key file {}", path.display()))
                }
            }
        }
        Err(err) => {
            Err(err).with_context(|| format!("cannot read the key file {}", path.display()))
        }
    }
}

fn parse_key_file(text: &str) -> anyhow::Result<Vec<SecretKey>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.parse::<SecretKey>().map_err(anyhow::Error::msg))
        .collect()
}

/// Writes a key file atomically (a temporary file, synced, then renamed), readable only by its
/// owner: the current key first, then the older ones.
pub fn write_key_file(path: &Path, keys: &[SecretKey]) -> anyhow::Result<()> {
    let tmp = write_temporary(path, keys)?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming the key file to {}", path.display()))?;
    Ok(())
}

/// Writes `keys` to a synced temporary file (mode 0600) beside `path` and returns its path.
fn write_temporary(path: &Path, keys: &[SecretKey]) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating the key file {}", tmp.display()))?;
    let mut text = String::from(
        "# saaskit's secret keys: the first seals, the others are kept for reading. Keep this file\n\
         # apart from database backups; without it, mail waiting in the outbox cannot be sent.\n",
    );
    for key in keys {
        text.push_str(&key.encode());
        text.push('\n');
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the key file {}", tmp.display()))?;
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(SecretKey::generate(), &[], KeySource::Setting)
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_place_and_hides_its_text() {
        let s = sealer();
        let sealed = s.seal("reset key abc123", b"outbox.body_text:1");
        assert!(sealed.starts_with("sk1."));
        assert!(!sealed.contains("abc123"));
        assert_eq!(
            s.open(&sealed, b"outbox.body_text:1").unwrap(),
            "reset key abc123"
        );
        assert!(matches!(
            s.open(&sealed, b"outbox.body_text:2"),
            Err(OpenError::Damaged)
        ));
        // Two seals of one text differ (random nonces).
        assert_ne!(sealed, s.seal("reset key abc123", b"outbox.body_text:1"));
    }

    #[test]
    fn a_tampered_value_or_a_foreign_key_is_refused() {
        let s = sealer();
        let mut sealed = s.seal("hello", b"c");
        let last = sealed.pop().unwrap();
        sealed.push(if last == 'A' { 'B' } else { 'A' });
        assert!(matches!(s.open(&sealed, b"c"), Err(OpenError::Damaged)));
        let other = sealer().seal("hello", b"c");
        assert!(matches!(
            s.open(&other, b"c"),
            Err(OpenError::UnknownKey(_))
        ));
        assert!(matches!(
            s.open("sk1.nonsense", b"c"),
            Err(OpenError::Damaged)
        ));
    }

    #[test]
    fn rotation_reads_old_values_and_reseals_them_under_the_new_key() {
        let old = SecretKey::generate();
        let before = Sealer::new(old.clone(), &[], KeySource::Setting);
        let sealed = before.seal("link", b"x");
        let after = Sealer::new(SecretKey::generate(), &[old], KeySource::Setting);
        assert_eq!(after.open(&sealed, b"x").unwrap(), "link");
        let resealed = after.reseal(&sealed, b"x").unwrap().expect("re-sealed");
        assert!(after.is_current(&resealed));
        assert_eq!(after.reseal(&resealed, b"x").unwrap(), None);
        assert_eq!(after.open(&resealed, b"x").unwrap(), "link");
        // Legacy clear text is sealed too; empty stays empty.
        assert!(after.reseal("clear", b"x").unwrap().is_some());
        assert_eq!(after.reseal("", b"x").unwrap(), None);
    }

    #[test]
    fn keys_parse_from_base64_and_never_print() {
        let key = SecretKey::generate();
        let parsed: SecretKey = key.encode().parse().unwrap();
        assert_eq!(parsed, key);
        let standard = STANDARD.encode(key.0);
        assert_eq!(standard.parse::<SecretKey>().unwrap(), key);
        assert!("c2hvcnQ".parse::<SecretKey>().is_err());
        assert!("not base64!".parse::<SecretKey>().is_err());
        assert!(!format!("{key:?}").contains(&key.encode()));
    }

    #[test]
    fn the_key_file_sits_beside_a_sqlite_database_by_default() {
        let mut config = crate::config::Config::defaults();
        config.database_url = "sqlite:///var/lib/saaskit/app.db?mode=rwc".into();
        assert_eq!(
            key_file_path(&config),
            PathBuf::from("/var/lib/saaskit/app.db.key")
        );
        config.database_url = "sqlite://saaskit.db".into();
        assert_eq!(key_file_path(&config), PathBuf::from("saaskit.db.key"));
        config.database_url = "postgres://db/saaskit".into();
        assert_eq!(key_file_path(&config), PathBuf::from("saaskit.key"));
        config.secret_key_file = Some("/run/keys/k".into());
        assert_eq!(key_file_path(&config), PathBuf::from("/run/keys/k"));
    }

    #[test]
    fn a_key_file_is_created_owner_only_and_read_back() {
        let dir = std::env::temp_dir().join(format!("saaskit_seal_{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.key");
        let created = load_or_create_key_file(&path).unwrap();
        assert_eq!(created.len(), 1);
        assert_eq!(load_or_create_key_file(&path).unwrap(), created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
