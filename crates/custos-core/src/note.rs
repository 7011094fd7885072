//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys, and C2SP
//! tlog-checkpoint bodies (<https://c2sp.org/tlog-checkpoint>).
//!
//! Key texts follow `golang.org/x/mod/sumdb/note`, so keys and notes interoperate with the Go
//! tooling and with witnesses: a verifier key is `<name>+<hex key id>+<base64(0x01 ‖ public
//! key)>`, a private key `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>`, and the key id
//! is the first four bytes (big-endian) of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key).
//!
//! Every parser here takes hostile input: it never panics, bounds its work by the input size
//! (and a note by [`MAX_SIGNATURES`]), and its errors say what is wrong without echoing
//! secrets.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The most signature lines [`open`] reads; the spec requires accepting at least 16.
pub const MAX_SIGNATURES: usize = 100;

/// Signature type identifier of Ed25519 in key texts and key ids.
const ALG_ED25519: u8 = 0x01;

/// Every signature line starts with an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key, note or checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name is empty or contains a space, a '+' or a control character.
    #[error(
        "invalid key name {name:?}: must be non-empty, without spaces, '+' or control characters"
    )]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// A verifier key text is malformed.
    #[error("malformed verifier key: {reason}")]
    MalformedVerifierKey {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A private key text is malformed (the error never contains key material).
    #[error("malformed private key: {reason}")]
    MalformedPrivateKey {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key uses a signature algorithm other than Ed25519.
    #[error("unsupported signature algorithm 0x{alg:02x} (only Ed25519, 0x01, is supported)")]
    UnsupportedAlgorithm {
        /// The algorithm byte found.
        alg: u8,
    },
    /// The key id in a key text does not belong to the key and name.
    #[error("key id {stated:08x} does not match the key (computed {computed:08x})")]
    KeyIdMismatch {
        /// The id written in the key text.
        stated: u32,
        /// The id computed from name and public key.
        computed: u32,
    },
    /// A text cannot be signed as a note.
    #[error("text cannot be signed: {reason}")]
    InvalidText {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A signed note is malformed.
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// A note has more signature lines than [`MAX_SIGNATURES`].
    #[error("note has more than {max} signature lines")]
    TooManySignatures {
        /// The limit.
        max: usize,
    },
    /// A signature line from the trusted key does not verify.
    #[error("signature by {name}+{key_id:08x} does not verify")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key id.
        key_id: u32,
    },
    /// No signature line comes from the trusted key.
    #[error("note has no signature by {name}+{key_id:08x}")]
    NoTrustedSignature {
        /// The trusted key's name.
        name: String,
        /// The trusted key's id.
        key_id: u32,
    },
    /// A checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
}

/// Whether `name` may name a key: non-empty, no Unicode space, no '+', and no control character
/// (a note may not contain one, so such a name could never sign anything).
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c < ' ')
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// The C2SP key id: SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)[:4], big-endian.
fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public_key);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Parses exactly eight hex digits (either case, as Go's `ParseUint` accepts).
fn parse_key_id(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// The parts of `<name>+<8 hex digits>+<base64>` (the base64 may itself contain '+').
struct KeyText<'a> {
    name: &'a str,
    key_id: u32,
    key: Vec<u8>,
}

/// Splits and decodes a key text; `malformed` builds the caller's error for a reason.
fn parse_key_text(
    s: &str,
    malformed: fn(&'static str) -> NoteError,
) -> Result<KeyText<'_>, NoteError> {
    if s.trim() != s {
        return Err(malformed("has leading or trailing whitespace"));
    }
    let (name, rest) = s
        .split_once('+')
        .ok_or(malformed("missing '+' after the name"))?;
    check_name(name)?;
    let (id, key) = rest
        .split_once('+')
        .ok_or(malformed("missing '+' after the key id"))?;
    let key_id = parse_key_id(id).ok_or(malformed("key id is not 8 hex digits"))?;
    let key = STANDARD
        .decode(key)
        .map_err(|_| malformed("key is not valid base64"))?;
    Ok(KeyText { name, key_id, key })
}

/// Splits the algorithm byte off a decoded key and checks it is a 32-byte Ed25519 key.
fn ed25519_key_bytes(
    key: &[u8],
    malformed: fn(&'static str) -> NoteError,
) -> Result<[u8; 32], NoteError> {
    let (&alg, rest) = key.split_first().ok_or(malformed("key is empty"))?;
    if alg != ALG_ED25519 {
        return Err(NoteError::UnsupportedAlgorithm { alg });
    }
    rest.try_into()
        .map_err(|_| malformed("Ed25519 key is not 32 bytes"))
}

fn malformed_verifier(reason: &'static str) -> NoteError {
    NoteError::MalformedVerifierKey { reason }
}

fn malformed_private(reason: &'static str) -> NoteError {
    NoteError::MalformedPrivateKey { reason }
}

/// An Ed25519 signing key with its key name and key id: signs notes.
#[derive(Clone)]
pub struct Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for Signer {
    /// Shows name and key id, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for key `name` from a 32-byte Ed25519 seed; `name` must be non-empty, without
    /// whitespace or '+'.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>` and checks the key id.
    /// Surrounding whitespace is refused, so trim a key file's contents first.
    pub fn parse(private_key_text: &str) -> Result<Self, NoteError> {
        let rest = private_key_text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(malformed_private("does not start with PRIVATE+KEY+"))?;
        let parts = parse_key_text(rest, malformed_private)?;
        let seed = ed25519_key_bytes(&parts.key, malformed_private)?;
        let signer = Self::from_seed(parts.name, seed)?;
        if signer.key_id != parts.key_id {
            return Err(NoteError::KeyIdMismatch {
                stated: parts.key_id,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The private key text `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>`: a secret.
    pub fn to_private_key_text(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_ED25519);
        key.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(key)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// A bare Ed25519 signature over `message` with the note key — for signed JSON objects
    /// (gate decisions sign the RFC 8785 form of the decision), whose bytes can never be a
    /// note text (a note text ends in a newline; a JSON object in a brace).
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// Signs `text` and returns the full note: text + "\n" + one signature line.
    ///
    /// The text must be non-empty, end in '\n' and contain no control character other than
    /// '\n' (empty lines are allowed: the signatures start after the note's last blank line).
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if text.is_empty() {
            return Err(NoteError::InvalidText {
                reason: "text is empty",
            });
        }
        if !text.ends_with('\n') {
            return Err(NoteError::InvalidText {
                reason: "text does not end in a newline",
            });
        }
        if text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::InvalidText {
                reason: "text contains a control character other than newline",
            });
        }
        let signature = self.key.sign(text.as_bytes());
        let mut payload = Vec::with_capacity(4 + 64);
        payload.extend_from_slice(&self.key_id.to_be_bytes());
        payload.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(payload)
        ))
    }
}

/// An Ed25519 public key with its key name and key id: verifies notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Verifier {
    /// Whether `signature` is this key's Ed25519 signature over `message` (see
    /// [`Signer::sign_bytes`]). Strict verification: no malleable or small-order forms.
    pub fn verify_bytes(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.key
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    /// Parses `<name>+<hex key id>+<base64(0x01 ‖ public key)>` and checks the key id.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let parts = parse_key_text(s, malformed_verifier)?;
        let public_key = ed25519_key_bytes(&parts.key, malformed_verifier)?;
        let verifier = Self::from_public_key(parts.name, public_key)?;
        if verifier.key_id != parts.key_id {
            return Err(NoteError::KeyIdMismatch {
                stated: parts.key_id,
                computed: verifier.key_id,
            });
        }
        Ok(verifier)
    }

    /// A verifier for key `name` from a 32-byte Ed25519 public key.
    pub fn from_public_key(name: &str, public_key: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = VerifyingKey::from_bytes(&public_key)
            .map_err(|_| malformed_verifier("not an Ed25519 public key"))?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &public_key),
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

impl fmt::Display for Verifier {
    /// The verifier key text `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_ED25519);
        key.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(key)
        )
    }
}

/// Opens a note: splits text and signatures, checks that at least one signature line is from
/// `verifier` (matching name AND key id) and valid; unknown signers' lines are ignored; a line
/// from our name+id that does not verify is an error. Returns the signed text.
///
/// Malformed signature lines are errors even from unknown signers, as in the Go reference.
pub fn open<'a>(note: &'a str, verifier: &Verifier) -> Result<&'a str, NoteError> {
    if let Some(c) = note.chars().find(|&c| c < ' ' && c != '\n') {
        return Err(NoteError::MalformedNote(format!(
            "contains control character U+{:04X}",
            u32::from(c)
        )));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| NoteError::MalformedNote("no blank line before the signatures".into()))?;
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    let signatures = signatures.strip_suffix('\n').ok_or_else(|| {
        NoteError::MalformedNote("signature block is empty or does not end in a newline".into())
    })?;

    let mut trusted = false;
    for (i, line) in signatures.split('\n').enumerate() {
        if i == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        let line_error =
            |what: &str| NoteError::MalformedNote(format!("signature line {}: {what}", i + 1));
        let body = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| line_error("does not start with an em dash and a space"))?;
        let (name, signature) = body
            .split_once(' ')
            .ok_or_else(|| line_error("no space between key name and signature"))?;
        if !is_valid_name(name) {
            return Err(line_error("invalid key name"));
        }
        let raw = STANDARD
            .decode(signature)
            .map_err(|_| line_error("signature is not valid base64"))?;
        let Some((id, signature)) = raw.split_first_chunk::<4>().filter(|(_, s)| !s.is_empty())
        else {
            return Err(line_error(
                "signature is shorter than a key id and one byte",
            ));
        };
        if name != verifier.name || u32::from_be_bytes(*id) != verifier.key_id {
            continue;
        }
        let invalid = || NoteError::InvalidSignature {
            name: verifier.name.clone(),
            key_id: verifier.key_id,
        };
        let signature = Signature::from_slice(signature).map_err(|_| invalid())?;
        verifier
            .key
            .verify_strict(text.as_bytes(), &signature)
            .map_err(|_| invalid())?;
        trusted = true;
    }
    if !trusted {
        return Err(NoteError::NoTrustedSignature {
            name: verifier.name.clone(),
            key_id: verifier.key_id,
        });
    }
    Ok(text)
}

/// A C2SP tlog-checkpoint body: the log's origin, tree size and root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log identity, e.g. `example.com/log42`.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 9162 root of the tree at `size`.
    pub root: Hash,
    /// Opaque, non-empty extension lines (NOT RECOMMENDED by the spec; custos writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text `<origin>\n<size>\n<base64 root>\n` followed by one line per extension.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for extension in &self.extensions {
            text.push_str(extension);
            text.push('\n');
        }
        text
    }

    /// Parses a checkpoint body strictly: a non-empty origin, a decimal size without leading
    /// zeros, a base64 root of exactly 32 bytes, non-empty extension lines, a final newline and
    /// no control characters.
    ///
    /// This does not check that the origin matches the signer's key name; callers that want
    /// that (the spec says it SHOULD) compare `origin` themselves.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let err = |reason: String| NoteError::MalformedCheckpoint(reason);
        if text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(err("contains a control character".into()));
        }
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| err("does not end in a newline".into()))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(err("origin line is empty".into()));
        }
        let size = lines
            .next()
            .ok_or_else(|| err("missing tree size line".into()))?;
        let size = parse_tree_size(size).map_err(err)?;
        let root = lines
            .next()
            .ok_or_else(|| err("missing root hash line".into()))?;
        let root = STANDARD
            .decode(root)
            .map_err(|_| err(format!("root hash {root:?} is not valid base64")))?;
        let root = Hash::try_from(root.as_slice())
            .map_err(|_| err(format!("root hash is {} bytes, not 32", root.len())))?;
        let extensions = lines
            .enumerate()
            .map(|(i, line)| {
                if line.is_empty() {
                    Err(err(format!("extension line {} is empty", i + 1)))
                } else {
                    Ok(line.to_owned())
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// ASCII decimal without sign or leading zeros ("0" alone for the empty tree).
fn parse_tree_size(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("tree size {s:?} is not a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("tree size {s:?} has a leading zero"));
    }
    s.parse()
        .map_err(|_| format!("tree size {s:?} does not fit in 64 bits"))
}

/// Signs a checkpoint: checks it has a non-empty single-line origin and non-empty single-line
/// extensions, then signs its text as a note.
pub fn sign_checkpoint(signer: &Signer, cp: &Checkpoint) -> Result<String, NoteError> {
    if cp.origin.is_empty() || cp.origin.contains('\n') {
        return Err(NoteError::MalformedCheckpoint(
            "origin must be one non-empty line".into(),
        ));
    }
    if cp
        .extensions
        .iter()
        .any(|e| e.is_empty() || e.contains('\n'))
    {
        return Err(NoteError::MalformedCheckpoint(
            "every extension must be one non-empty line".into(),
        ));
    }
    signer.sign(&cp.to_text())
}

/// Opens a signed checkpoint note with `verifier` and parses its body.
pub fn open_checkpoint(note: &str, verifier: &Verifier) -> Result<Checkpoint, NoteError> {
    Checkpoint::parse(open(note, verifier)?)
}
