//! Secrets: `CREATE SECRET name WITH (backend = 'meta') AS 'value'` (RisingWave's form), used
//! in a connector's options as `'properties.sasl.password' = SECRET name`.
//!
//! A secret's value is sealed with AES-256-GCM under the key the server was started with
//! (`--secret-key-file` or `OPENCLAW_SECRET_KEY`) before anything is written: the durable
//! catalog keeps `CREATE SECRET name WITH (backend = 'meta')` and the sealed bytes, never the
//! value, nor the statement as typed. The value is opened only where a connector is handed
//! its options; `SHOW`, `DESCRIBE`, `EXPLAIN` and the catalog show `SECRET name`.
//!
//! In an options map a reference is the value [`REFERENCE_PREFIX`]` + name`: the prefix starts
//! with NUL, which no option value may hold (the parser refuses it), so a reference can never
//! be typed as a literal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use base64::Engine as _;
use openclaw_engine::ObjectId;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::Options;

mod ddl;

/// What an options map holds in place of a secret's value.
pub(crate) const REFERENCE_PREFIX: &str = "\0secret:";

/// The version byte that starts a sealed value (see [`seal_with_nonce`]).
const SEALED_V1: u8 = 1;

/// The catalog record's key for a secret's sealed value (base64).
pub(crate) const SEALED_KEY: &str = "secret.sealed";

/// The only backend: the value sealed in OpenClaw's own catalog.
pub(crate) const BACKEND_META: &str = "meta";

/// Longest value a secret may hold.
pub const MAX_SECRET_BYTES: usize = 64 << 10;

/// The value of an option that refers to secret `name`.
pub(crate) fn reference(name: &str) -> String {
    format!("{REFERENCE_PREFIX}{name}")
}

/// The secret an option's value refers to, if it is a reference.
pub(crate) fn referenced(value: &str) -> Option<&str> {
    value.strip_prefix(REFERENCE_PREFIX)
}

/// Every secret `options` refers to.
pub(crate) fn references(options: &Options) -> BTreeSet<String> {
    options.values().filter_map(|v| referenced(v)).map(str::to_string).collect()
}

/// `'key' = 'value'` for each option of `plain`, but `'key' = SECRET name` where `typed` (the
/// options as written) refers to a secret: what `SHOW` and `DESCRIBE` print.
pub(crate) fn display_options<'a>(plain: &'a Options, typed: &'a Options) -> impl Iterator<Item = (&'a String, String)> {
    plain.iter().map(|(k, v)| match typed.get(k).and_then(|t| referenced(t)) {
        Some(secret) => (k, format!("'{k}' = SECRET {secret}")),
        None => (k, format!("'{k}' = '{v}'")),
    })
}

/// The key secrets are sealed with: 32 bytes, given as 64 hex digits or in base64.
pub struct SecretKey(LessSafeKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256 takes 32 bytes")))
    }

    /// Reads a key written as 64 hex digits (`openssl rand -hex 32`) or as base64
    /// (`openssl rand -base64 32`); surrounding whitespace is ignored. The error never
    /// repeats the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = match text.len() {
            64 if text.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex digits")).collect::<Vec<u8>>()
            }
            _ => base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| "the secret key is neither 64 hex digits nor base64".to_string())?,
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("the secret key has {} bytes; AES-256 needs 32 (openssl rand -hex 32)", b.len()))?;
        Ok(Self::from_bytes(&bytes))
    }
}

/// What the sealed value is bound to: a sealed value moved to another name does not open.
fn aad(name: &str) -> Vec<u8> {
    format!("openclaw secret v1\0{name}").into_bytes()
}

/// Seals `value` for secret `name` under a fresh random nonce.
pub(crate) fn seal(key: &SecretKey, name: &str, value: &str) -> SqlResult<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| SqlError::new(SqlState::Internal, "no random bytes for a nonce"))?;
    Ok(seal_with_nonce(key, name, value, nonce))
}

/// The sealed form, version 1: `[1][nonce: 12 bytes][AES-256-GCM ciphertext and 16-byte
/// tag]`, with the secret's name as associated data.
fn seal_with_nonce(key: &SecretKey, name: &str, value: &str, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let mut sealed = value.as_bytes().to_vec();
    key.0
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(name)), &mut sealed)
        .expect("AES-GCM seals any value under 64 GiB");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(SEALED_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens what [`seal`] made; fails on another key, another name, a changed byte or an unknown
/// version.
pub(crate) fn open(key: &SecretKey, name: &str, sealed: &[u8]) -> SqlResult<String> {
    let cannot = |why: &str| {
        SqlError::new(SqlState::InvalidParameterValue, format!("cannot open secret {}: {why}", quote(name)))
            .with_hint("start the server with the key the secret was created under (--secret-key-file or OPENCLAW_SECRET_KEY)")
    };
    let (version, rest) = sealed.split_first().ok_or_else(|| cannot("its sealed value is empty"))?;
    if *version != SEALED_V1 {
        return Err(cannot(&format!("unknown sealed format {version}")));
    }
    if rest.len() < NONCE_LEN {
        return Err(cannot("its sealed value is cut short"));
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| cannot("bad nonce"))?;
    let mut buffer = ciphertext.to_vec();
    let plain = key.0.open_in_place(nonce, Aad::from(aad(name)), &mut buffer).map_err(|_| cannot("the key does not open it (another key, or the record was changed)"))?;
    String::from_utf8(plain.to_vec()).map_err(|_| cannot("its value is not UTF-8"))
}

struct Stored {
    id: ObjectId,
    sealed: Vec<u8>,
}

/// The secrets of a database and which objects use them.
#[derive(Default)]
pub struct Secrets {
    key: Option<SecretKey>,
    stored: Mutex<BTreeMap<String, Stored>>,
    /// Object name → the secrets its options refer to.
    uses: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl Secrets {
    pub fn new(key: Option<SecretKey>) -> Self {
        Self { key, ..Default::default() }
    }

    fn key(&self) -> SqlResult<&SecretKey> {
        self.key.as_ref().ok_or_else(|| {
            SqlError::new(SqlState::ObjectNotInPrerequisiteState, "secrets need a key, and the server was started without one")
                .with_hint("start it with OPENCLAW_SECRET_KEY or --secret-key-file holding 32 bytes (openssl rand -hex 32)")
        })
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.stored.lock().expect("secrets lock").contains_key(name)
    }

    /// Seals `value` for a new secret `name`; what the catalog record keeps.
    pub(crate) fn seal(&self, name: &str, value: &str) -> SqlResult<Vec<u8>> {
        if value.len() > MAX_SECRET_BYTES {
            return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("a secret's value may hold at most {} KiB", MAX_SECRET_BYTES >> 10)));
        }
        seal(self.key()?, name, value)
    }

    /// Keeps secret `name`, after checking that the key opens it (so that a server started
    /// with the wrong key says so at once).
    pub(crate) fn insert(&self, id: ObjectId, name: &str, sealed: Vec<u8>) -> SqlResult<()> {
        open(self.key()?, name, &sealed)?;
        let previous = self.stored.lock().expect("secrets lock").insert(name.to_string(), Stored { id, sealed });
        assert!(previous.is_none(), "secret {name} stored twice");
        Ok(())
    }

    /// Forgets secret `name`, returning its id.
    pub(crate) fn remove(&self, name: &str) -> Option<ObjectId> {
        self.stored.lock().expect("secrets lock").remove(name).map(|s| s.id)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.stored.lock().expect("secrets lock").keys().cloned().collect()
    }

    /// `options` with each secret reference replaced by the secret's value: what a connector
    /// is handed, never shown or stored.
    pub(crate) fn reveal(&self, options: &Options) -> SqlResult<Options> {
        let stored = self.stored.lock().expect("secrets lock");
        let mut plain = options.clone();
        for value in plain.values_mut() {
            let Some(name) = referenced(value) else { continue };
            let secret = stored.get(name).ok_or_else(|| undefined_secret(name))?;
            *value = open(self.key()?, name, &secret.sealed)?;
        }
        Ok(plain)
    }

    /// `error` with the value of every secret `options` refers to blotted out: a connector
    /// that repeats an option's value in its complaint must not show a secret.
    pub(crate) fn scrub(&self, mut error: SqlError, options: &Options) -> SqlError {
        let Ok(plain) = self.reveal(options) else { return error };
        for (key, typed) in options {
            let (Some(name), Some(value)) = (referenced(typed), plain.get(key)) else { continue };
            if value.is_empty() {
                continue;
            }
            let mask = format!("SECRET {name}");
            error.message = error.message.replace(value.as_str(), &mask);
            error.detail = error.detail.map(|d| d.replace(value.as_str(), &mask));
            error.hint = error.hint.map(|h| h.replace(value.as_str(), &mask));
        }
        error
    }

    /// Records that `object` refers to the secrets in `options`.
    pub(crate) fn record_uses(&self, object: &str, options: &Options) {
        let used = references(options);
        if !used.is_empty() {
            self.uses.lock().expect("secrets lock").insert(object.to_string(), used);
        }
    }

    /// Forgets what `object` used (it was dropped).
    pub(crate) fn forget_uses(&self, object: &str) {
        self.uses.lock().expect("secrets lock").remove(object);
    }

    /// The objects whose options refer to secret `name`.
    pub(crate) fn users(&self, name: &str) -> Vec<String> {
        self.uses.lock().expect("secrets lock").iter().filter(|(_, s)| s.contains(name)).map(|(o, _)| o.clone()).collect()
    }
}

pub(crate) fn undefined_secret(name: &str) -> SqlError {
    SqlError::new(SqlState::UndefinedObject, format!("secret {} does not exist", quote(name))).with_hint("CREATE SECRET name WITH (backend = 'meta') AS 'value'; SHOW SECRETS lists them")
}

pub(crate) fn encode_sealed(sealed: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sealed)
}

pub(crate) fn decode_sealed(name: &str, text: &str) -> SqlResult<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| SqlError::new(SqlState::Internal, format!("the catalog record of secret {} is corrupt", quote(name))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> SecretKey {
        SecretKey::parse(KEY_HEX).unwrap()
    }

    /// The sealed format is ours and persisted: these bytes must open forever.
    #[test]
    fn golden_sealed_bytes() {
        let sealed = seal_with_nonce(&key(), "kafka_password", "hunter2", [7; NONCE_LEN]);
        let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, GOLDEN_HEX);
        assert_eq!(open(&key(), "kafka_password", &sealed).unwrap(), "hunter2");
    }

    /// Checked against Python's `cryptography` (AESGCM) when written.
    const GOLDEN_HEX: &str = "01070707070707070707070707671fc8280a7de5742b7b6100a5c9aa81cb3f16ccfff977";

    #[test]
    fn another_key_name_or_byte_does_not_open() {
        let sealed = seal(&key(), "s", "value").unwrap();
        let other = SecretKey::parse(&"ab".repeat(32)).unwrap();
        assert!(open(&other, "s", &sealed).is_err());
        assert!(open(&key(), "t", &sealed).is_err());
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(open(&key(), "s", &changed).is_err());
        assert!(open(&key(), "s", &sealed[..5]).is_err());
        let error = open(&other, "s", &sealed).unwrap_err();
        assert!(!error.message.contains("value"), "{}", error.message);
        // Two seals of one value differ (fresh nonces).
        assert_ne!(seal(&key(), "s", "value").unwrap(), sealed);
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_errors_do_not_repeat_them() {
        assert!(SecretKey::parse(&format!("  {KEY_HEX}\n")).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert!(SecretKey::parse(&b64).is_ok());
        let short = SecretKey::parse("c2hvcnQ=").unwrap_err();
        assert!(short.contains("5 bytes"), "{short}");
        let junk = SecretKey::parse("not a key at all!").unwrap_err();
        assert!(!junk.contains("not a key"), "{junk}");
    }

    #[test]
    fn references_are_revealed_shown_by_name_and_scrubbed() {
        let secrets = Secrets::new(Some(key()));
        secrets.insert(1, "pw", seal(&key(), "pw", "s3cr3t-value").unwrap()).unwrap();
        let typed: Options = [("a".to_string(), "plain".to_string()), ("b".to_string(), reference("pw"))].into();
        let plain = secrets.reveal(&typed).unwrap();
        assert_eq!(plain["b"], "s3cr3t-value");
        let shown: Vec<String> = display_options(&plain, &typed).map(|(_, s)| s).collect();
        assert_eq!(shown, ["'a' = 'plain'", "'b' = SECRET pw"]);
        let error = secrets.scrub(SqlError::new(SqlState::InvalidParameterValue, "bad value s3cr3t-value").with_hint("s3cr3t-value?"), &typed);
        assert_eq!(error.message, "bad value SECRET pw");
        assert_eq!(error.hint.as_deref(), Some("SECRET pw?"));
        let missing: Options = [("c".to_string(), reference("nope"))].into();
        assert_eq!(secrets.reveal(&missing).unwrap_err().code, SqlState::UndefinedObject);
        assert!(Secrets::new(None).seal("x", "y").is_err());
    }
}
