//! Encryption at rest and the keyed hashes derived from the master key.
//!
//! Envelope encryption: every subject has its own random 256-bit data key;
//! identity and location (and the free text that may repeat them) are sealed
//! with it (XChaCha20-Poly1305, random 192-bit nonce, the row id and purpose as
//! associated data, so a ciphertext moved to another row does not open). The
//! data key is stored wrapped by the master key. Destroying a subject's wrapped
//! key makes its identity unrecoverable.
//!
//! Keys derived from the master key once at start (never per request):
//! - the blind-index key: HMAC-SHA256 over normalised ID, passport and phone
//!   numbers, so intake can find earlier referrals of the same person without
//!   storing the numbers in clear;
//! - the page-token key: authenticates list cursors so a caller cannot forge one.

use std::{fs, io::Write, path::Path};

use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop};

type HmacSha256 = Hmac<Sha256>;

/// Version byte in front of every sealed value.
const SEAL_V1: u8 = 1;
const NONCE_LEN: usize = 24;

/// A failure of the crypto layer. Never carries plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The master key is missing or malformed.
    #[error("master key: {0}")]
    MasterKey(String),
    /// A ciphertext did not authenticate (wrong key, tampered, or moved).
    #[error("ciphertext does not authenticate")]
    Open,
    /// A key or ciphertext has the wrong shape.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// 32 bytes of key material, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct KeyBytes([u8; 32]);

impl KeyBytes {
    fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }
}

/// The master key: wraps data keys and seeds the derived keys.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: KeyBytes,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Parses base64 of exactly 32 bytes.
    pub fn from_base64(encoded: &SecretString) -> Result<Self, CryptoError> {
        let mut raw = STANDARD
            .decode(encoded.expose_secret().trim())
            .map_err(|_| CryptoError::MasterKey("not valid base64".into()))?;
        if raw.len() != 32 {
            raw.zeroize();
            return Err(CryptoError::MasterKey("must be 32 bytes".into()));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw);
        raw.zeroize();
        Ok(Self::from_bytes(key))
    }

    /// Reads `path`, or when `create` is set and the file is missing, generates
    /// a key there with mode 0600.
    pub fn load_or_generate(path: &Path, create: bool) -> Result<Self, CryptoError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&SecretString::from(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = KeyBytes::random();
                let encoded = SecretString::from(STANDARD.encode(key.0));
                write_private(path, encoded.expose_secret().as_bytes())
                    .map_err(|e| CryptoError::MasterKey(format!("{}: {e}", path.display())))?;
                Self::from_base64(&encoded)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(CryptoError::MasterKey(format!(
                    "no master key configured and {} does not exist (set REFNET_MASTER_KEY)",
                    path.display()
                )))
            }
            Err(e) => Err(CryptoError::MasterKey(format!("{}: {e}", path.display()))),
        }
    }

    /// A short public id of this key (stored beside wrapped keys for rotation).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn derive(&self, purpose: &[u8]) -> KeyBytes {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(purpose);
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        KeyBytes(out)
    }

    /// Wraps a new random data key for `subject`.
    pub fn new_data_key(&self, subject: Uuid) -> Result<(DataKey, Vec<u8>), CryptoError> {
        let dek = DataKey(KeyBytes::random());
        let wrapped = seal_with(&self.key, &dek.0.0, &wrap_aad(subject))?;
        Ok((dek, wrapped))
    }

    /// Wraps the root `root` (key bytes of another [`MasterKey`]).
    pub fn wrap_root(&self, root: &MasterKey) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.key, &root.key.0, b"refnet/root/v1")
    }

    /// Unwraps a root wrapped by [`MasterKey::wrap_root`].
    pub fn unwrap_root(&self, wrapped: &[u8]) -> Result<MasterKey, CryptoError> {
        let key = open_key(&self.key, wrapped, b"refnet/root/v1", "root key")?;
        Ok(Self::from_bytes(key.0))
    }

    /// Re-wraps `subject`'s data key `wrapped` (by `from`) under this key.
    pub fn rewrap_data_key(
        &self,
        from: &MasterKey,
        subject: Uuid,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let dek = from.unwrap_data_key(subject, wrapped)?;
        seal_with(&self.key, &dek.0.0, &wrap_aad(subject))
    }

    fn from_bytes(key: [u8; 32]) -> Self {
        let id = hex_prefix(&Sha256::digest(
            b"refnet/master-key-id/v1"
                .iter()
                .chain(key.iter())
                .copied()
                .collect::<Vec<u8>>(),
        ));
        Self {
            id,
            key: KeyBytes(key),
        }
    }

    /// Unwraps the data key of `subject`.
    pub fn unwrap_data_key(&self, subject: Uuid, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        open_key(&self.key, wrapped, &wrap_aad(subject), "data key").map(DataKey)
    }
}

/// Opens a wrapped 32-byte key; `what` names it in the error.
fn open_key(
    key: &KeyBytes,
    wrapped: &[u8],
    aad: &[u8],
    what: &'static str,
) -> Result<KeyBytes, CryptoError> {
    let mut raw = open_with(key, wrapped, aad)?;
    if raw.len() != 32 {
        raw.zeroize();
        return Err(CryptoError::Malformed(what));
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&raw);
    raw.zeroize();
    Ok(KeyBytes(out))
}

fn wrap_aad(subject: Uuid) -> Vec<u8> {
    let mut aad = b"refnet/dek/v1/".to_vec();
    aad.extend_from_slice(subject.as_bytes());
    aad
}

/// A subject's data key.
pub struct DataKey(KeyBytes);

impl DataKey {
    /// Seals `plaintext` for the row `row` and purpose `purpose` (e.g. "identity").
    pub fn seal(&self, row: Uuid, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.0, plaintext, &field_aad(row, purpose))
    }

    /// Opens what [`DataKey::seal`] sealed for the same row and purpose.
    pub fn open(&self, row: Uuid, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.0, sealed, &field_aad(row, purpose))
    }
}

fn field_aad(row: Uuid, purpose: &str) -> Vec<u8> {
    let mut aad = b"refnet/field/v1/".to_vec();
    aad.extend_from_slice(row.as_bytes());
    aad.push(b'/');
    aad.extend_from_slice(purpose.as_bytes());
    aad
}

fn seal_with(key: &KeyBytes, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Malformed("plaintext"))?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(SEAL_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_with(key: &KeyBytes, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != SEAL_V1 {
        return Err(CryptoError::Malformed("ciphertext"));
    }
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    cipher
        .decrypt(
            XNonce::from_slice(&sealed[1..1 + NONCE_LEN]),
            Payload {
                msg: &sealed[1 + NONCE_LEN..],
                aad,
            },
        )
        .map_err(|_| CryptoError::Open)
}

/// Keyed hashes of normalised identifiers (the blind index).
#[derive(Clone)]
pub struct BlindIndex(KeyBytes);

impl BlindIndex {
    /// The digest of identifier `value` of kind `kind` ("national_id", "phone", ...).
    /// `value` must already be normalised (E.164 phone, upper-case passport).
    pub fn digest(&self, kind: &str, value: &str) -> Vec<u8> {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// Authenticates opaque tokens (list cursors) handed to clients.
#[derive(Clone)]
pub struct TokenSealer(KeyBytes);

impl TokenSealer {
    /// `payload` followed by a 128-bit MAC, base64url.
    pub fn seal(&self, payload: &[u8]) -> String {
        let mut out = payload.to_vec();
        out.extend_from_slice(&self.tag(payload));
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The payload of a token made by [`TokenSealer::seal`], if it is authentic.
    pub fn open(&self, token: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
        if raw.len() < 16 {
            return None;
        }
        let (payload, tag) = raw.split_at(raw.len() - 16);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0.0).ok()?;
        mac.update(b"refnet/token/v1");
        mac.update(payload);
        mac.verify_truncated_left(tag).ok()?;
        Some(payload.to_vec())
    }

    fn tag(&self, payload: &[u8]) -> [u8; 16] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"refnet/token/v1");
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }
}

/// Every key refnet derives from its master key, ready for use.
///
/// The derived keys (blind index, page tokens, pseudonyms) come from the
/// *root*: 32 bytes stored in the database wrapped by the master key
/// (`key_roots`). A deployment's first root is its first master key's bytes, so
/// digests and pseudonyms are the same as before roots existed; rotating the
/// master key re-wraps the root and every data key, and the derived keys stay
/// the same.
#[derive(Clone)]
pub struct Keyring {
    /// The master key: wraps new data keys.
    pub master: MasterKey,
    /// Earlier (or, during a rotation, next) master keys: unwrap only.
    others: Vec<MasterKey>,
    /// What the derived keys come from.
    root: MasterKey,
    /// The blind-index key.
    pub blind_index: BlindIndex,
    /// The page-token key.
    pub tokens: TokenSealer,
    /// The key of subjects' stable pseudonymous tokens.
    pseudonyms: BlindIndex,
}

impl Keyring {
    /// A keyring whose root is `master` itself (a deployment's first key; tests).
    pub fn new(master: MasterKey) -> Self {
        let root = master.clone();
        Self::with_root(master, Vec::new(), &root)
    }

    /// A keyring wrapping with `master`, unwrapping with it or any of
    /// `others`, and deriving its keys from `root`.
    pub fn with_root(master: MasterKey, others: Vec<MasterKey>, root: &MasterKey) -> Self {
        Self {
            blind_index: BlindIndex(root.derive(b"refnet/blind-index/v1")),
            tokens: TokenSealer(root.derive(b"refnet/page-token/v1")),
            pseudonyms: BlindIndex(root.derive(b"refnet/pseudonym/v1")),
            master,
            others,
            root: root.clone(),
        }
    }

    /// The root wrapped by `by` (to store it under a new master key).
    pub fn wrapped_root(&self, by: &MasterKey) -> Result<Vec<u8>, CryptoError> {
        by.wrap_root(&self.root)
    }

    /// The master key with id `key_id`, current or other.
    pub fn master_with_id(&self, key_id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.master)
            .chain(&self.others)
            .find(|k| k.id() == key_id)
    }

    /// Unwraps `subject`'s data key, wrapped by the master key `key_id`.
    pub fn unwrap_data_key(
        &self,
        subject: Uuid,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, CryptoError> {
        self.master_with_id(key_id)
            .ok_or_else(|| {
                CryptoError::MasterKey(format!(
                    "data key wrapped by master key {key_id}, which is not configured"
                ))
            })?
            .unwrap_data_key(subject, wrapped)
    }

    /// The stable pseudonymous token of a subject, e.g. `Subject-7F3K9`: the
    /// same for every viewer and reply, and meaningless without the master key.
    pub fn subject_token(&self, subject: Uuid) -> String {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let digest = self.pseudonyms.digest("subject", &subject.to_string());
        let tail: String = digest
            .iter()
            .take(5)
            .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
            .collect();
        format!("Subject-{tail}")
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Writes `contents` to a new file readable by the owner only (0600 on Unix).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_base64(&SecretString::from(STANDARD.encode([7u8; 32]))).unwrap()
    }

    #[test]
    fn sealed_values_open_only_for_their_row_and_purpose() {
        let m = master();
        let subject = Uuid::now_v7();
        let (dek, wrapped) = m.new_data_key(subject).unwrap();
        let sealed = dek.seal(subject, "identity", b"Wanjiru Kamau").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"Wanjiru"));
        let dek2 = m.unwrap_data_key(subject, &wrapped).unwrap();
        assert_eq!(
            dek2.open(subject, "identity", &sealed).unwrap(),
            b"Wanjiru Kamau"
        );
        assert!(dek2.open(subject, "location", &sealed).is_err());
        assert!(dek2.open(Uuid::now_v7(), "identity", &sealed).is_err());
        assert!(m.unwrap_data_key(Uuid::now_v7(), &wrapped).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(dek2.open(subject, "identity", &tampered).is_err());
    }

    #[test]
    fn master_key_must_be_32_bytes() {
        assert!(MasterKey::from_base64(&SecretString::from(STANDARD.encode([1u8; 16]))).is_err());
        assert!(MasterKey::from_base64(&SecretString::from("not base64!".to_owned())).is_err());
    }

    #[test]
    fn generated_master_key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        assert!(MasterKey::load_or_generate(&path, false).is_err());
        let a = MasterKey::load_or_generate(&path, true).unwrap();
        let b = MasterKey::load_or_generate(&path, true).unwrap();
        assert_eq!(a.id(), b.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn blind_index_and_tokens_are_keyed() {
        let ring = Keyring::new(master());
        let d1 = ring.blind_index.digest("phone", "+254712345678");
        assert_eq!(d1, ring.blind_index.digest("phone", "+254712345678"));
        assert_ne!(d1, ring.blind_index.digest("national_id", "+254712345678"));
        let token = ring.tokens.seal(b"cursor");
        assert_eq!(ring.tokens.open(&token).unwrap(), b"cursor");
        let mut forged = token.clone();
        forged.replace_range(0..1, if token.starts_with('A') { "B" } else { "A" });
        assert!(ring.tokens.open(&forged).is_none());
        assert!(ring.tokens.open("garbage").is_none());
    }
}
