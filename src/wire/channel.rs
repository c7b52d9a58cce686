//! Sealing and opening envelopes between one local key and one remote key.

use std::fmt;
use std::time::Instant;

use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::AeadInPlace;
use crypto_box::SalsaBox;
use curve25519_dalek::montgomery::MontgomeryPoint;
use rand_core::CryptoRng;

use super::body::{write_body, Body};
use super::error::{BindingError, EnvelopeError, Error, KeyError};
use super::pb::{self, Reader, Value};
use super::Limits;
use crate::{Description, Disposition, Peer, PublicKey};

/// Length of a Poly1305 tag (libsodium `crypto_box_MACBYTES`).
pub const TAG_LEN: usize = 16;
/// Length of a nonce (libsodium `crypto_box_NONCEBYTES`).
pub const NONCE_LEN: usize = 24;

/// A 24-byte `crypto_box` nonce. It must never repeat for the same pair of keys: take it from a
/// cryptographic RNG ([`Nonce::from_os_rng`], [`Nonce::random`], or 24 bytes of your own
/// generator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl Nonce {
    /// A nonce from the operating system's random generator (`getrandom`).
    pub fn from_os_rng() -> Result<Nonce, crate::OsRandomError> {
        let seed = crate::Seed::from_os_rng()?.to_bytes();
        let mut n = [0; NONCE_LEN];
        n.copy_from_slice(&seed[..NONCE_LEN]);
        Ok(Nonce(n))
    }

    /// A nonce drawn from `rng`, a generator of the [`rand_core`](crate::rand_core) version
    /// this crate re-exports (the crate reads no global RNG).
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Nonce {
        let mut n = [0; NONCE_LEN];
        rng.fill_bytes(&mut n);
        Nonce(n)
    }
}

/// Our 32-byte X25519 secret key (the WireGuard private key, as in cunicu).
#[derive(Clone)]
pub struct SecretKey(crypto_box::SecretKey);

impl SecretKey {
    /// The key from its 32 bytes (clamped on use, as X25519 does).
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        SecretKey(crypto_box::SecretKey::from_bytes(bytes))
    }

    /// A new key from a cryptographically secure generator.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> SecretKey {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        SecretKey::from_bytes(bytes)
    }

    /// A new key from the operating system's generator (what `wg genkey` does).
    pub fn from_os_rng() -> Result<SecretKey, crate::OsRandomError> {
        crate::Seed::from_os_rng().map(|seed| SecretKey::from_bytes(seed.to_bytes()))
    }

    /// The key in standard base64, as `wg genkey` prints it and [`str::parse`] reads it.
    /// Deliberately not `Display`: a secret key should never reach a log by accident.
    pub fn to_base64(&self) -> String {
        crate::keys::encode_key(&self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.public_key().as_bytes())
    }
}

impl std::str::FromStr for SecretKey {
    type Err = crate::KeyParseError;

    /// Reads a key in standard base64 (a WireGuard private key).
    fn from_str(s: &str) -> Result<SecretKey, crate::KeyParseError> {
        crate::keys::decode_key(s).map(SecretKey::from_bytes)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(f, "SecretKey({:?})", self.public_key())
    }
}

/// The cleartext addressing of an envelope, read without opening it (for routing an envelope
/// to the right [`Channel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The claimed sender (not authenticated until opened).
    pub sender: PublicKey,
    /// The claimed recipient.
    pub recipient: PublicKey,
}

impl Header {
    /// Reads the sender and recipient of an envelope, after the same size and shape checks as
    /// [`Channel::open`].
    pub fn peek(envelope: &[u8], limits: &Limits) -> Result<Header, Error> {
        parse_envelope(envelope, limits).map(|e| e.header)
    }
}

/// A decoded envelope whose shape has been checked.
struct Parsed<'a> {
    header: Header,
    body: &'a [u8],
    nonce: [u8; NONCE_LEN],
}

/// Reads an `Envelope` (and its `EncryptedMessage`) by hand, borrowing from the input. Accepts
/// what prost accepts for `proto::Envelope`, except groups and `contents` given twice.
fn parse_envelope<'a>(envelope: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, Error> {
    if envelope.len() > limits.max_envelope_len {
        return Err(Error::TooLarge {
            len: envelope.len(),
            max: limits.max_envelope_len,
        });
    }
    let framing = |_| EnvelopeError::Framing;
    let (mut sender, mut recipient): (&[u8], &[u8]) = (&[], &[]);
    let mut contents: Option<(&[u8], &[u8])> = None;
    let mut r = Reader::new(envelope);
    while let Some((field, value)) = r.next_field().map_err(framing)? {
        match (field, value) {
            (1, Value::Bytes(b)) => sender = b,
            (2, Value::Bytes(b)) => recipient = b,
            (3, Value::Bytes(b)) if contents.is_none() => {
                let (mut body, mut nonce): (&[u8], &[u8]) = (&[], &[]);
                let mut inner = Reader::new(b);
                while let Some((field, value)) = inner.next_field().map_err(framing)? {
                    match (field, value) {
                        (1, Value::Bytes(b)) => body = b,
                        (2, Value::Bytes(b)) => nonce = b,
                        (1..=2, _) => return Err(EnvelopeError::Framing.into()),
                        _ => {}
                    }
                }
                contents = Some((body, nonce));
            }
            (1..=3, _) => return Err(EnvelopeError::Framing.into()),
            _ => {}
        }
    }
    let key = |field, bytes: &[u8]| {
        <[u8; 32]>::try_from(bytes)
            .map(PublicKey)
            .map_err(|_| EnvelopeError::KeyLength {
                field,
                len: bytes.len(),
            })
    };
    let sender = key("sender", sender)?;
    let recipient = key("recipient", recipient)?;
    let (body, nonce) = contents.ok_or(EnvelopeError::MissingContents)?;
    let nonce =
        <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| EnvelopeError::NonceLength(nonce.len()))?;
    Ok(Parsed {
        header: Header { sender, recipient },
        body,
        nonce,
    })
}

/// The sealing context between our key and one remote key: the `crypto_box` shared key is
/// computed once (libsodium's `crypto_box_beforenm`) and reused for every envelope.
#[derive(Clone)]
pub struct Channel {
    local: PublicKey,
    remote: PublicKey,
    /// Shared by clones (an endpoint cloned by the model checker): the key never changes.
    cipher: std::sync::Arc<SalsaBox>,
    limits: Limits,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The precomputed key is secret: show only who talks to whom.
        f.debug_struct("Channel")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// The channel from `secret` to `remote`, with [`Limits::default`].
    ///
    /// Refuses a remote key equal to ours, and a remote key outside the prime-order subgroup:
    /// a low-order key would make the shared key public (libsodium refuses it too), and a key
    /// with a small-order component, which no honest X25519 key has, is where implementations
    /// differ (libsodium multiplies by the clamped scalar, the `crypto_box` crate by it reduced
    /// modulo the group order).
    pub fn new(secret: &SecretKey, remote: PublicKey) -> Result<Channel, Error> {
        Self::between(secret, secret.public_key(), remote)
    }

    /// [`Channel::new`] for a caller that knows `local`, the public key of `secret` (it saves a
    /// scalar multiplication per channel).
    pub(crate) fn between(
        secret: &SecretKey,
        local: PublicKey,
        remote: PublicKey,
    ) -> Result<Channel, Error> {
        debug_assert_eq!(local, secret.public_key());
        if !remote.is_canonical() {
            return Err(KeyError::NonCanonical.into());
        }
        if local == remote {
            return Err(KeyError::EqualKeys.into());
        }
        let point = MontgomeryPoint(remote.0);
        if point.mul_clamped(secret.0.to_bytes()).0 == [0; 32] {
            return Err(KeyError::LowOrder.into());
        }
        // Sign 0 picks one of the two Edwards points over this Montgomery u; torsion-freeness
        // does not depend on the choice (the two are negatives of each other).
        if !point.to_edwards(0).is_some_and(|p| p.is_torsion_free()) {
            return Err(KeyError::NotPrimeOrder.into());
        }
        let cipher = SalsaBox::new(&crypto_box::PublicKey::from_bytes(remote.0), &secret.0);
        Ok(Channel {
            local,
            remote,
            cipher: std::sync::Arc::new(cipher),
            limits: Limits::default(),
        })
    }

    /// The same channel with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Channel {
        self.limits = limits;
        self
    }

    /// Our public key.
    pub fn local_key(&self) -> PublicKey {
        self.local
    }

    /// The remote's public key.
    pub fn remote_key(&self) -> PublicKey {
        self.remote
    }

    /// The limits applied to what is sealed and opened.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Seals `description` for the remote under `nonce`, which must never repeat for this pair
    /// of keys: take it from [`Nonce::from_os_rng`], from [`Nonce::random`] with a
    /// cryptographic generator, or write 24 random bytes from any generator into
    /// [`Nonce`] yourself. Returns the encoded envelope.
    ///
    /// Refuses a description that the remote (with the same limits) would reject.
    pub fn seal(&self, description: &Description, nonce: Nonce) -> Result<Vec<u8>, Error> {
        // The body is written first, after room for the longest header; the header is then
        // written right before it and the unused room cut off.
        const ROOM: usize = 2 * (2 + 32) + 2 * (1 + 10) + TAG_LEN;
        let mut out = Vec::with_capacity(ROOM + 256 + 96 * description.candidates.len() + 26);
        out.resize(ROOM, 0);
        write_body(&mut out, self.local, self.remote, description, &self.limits)?;
        let body_len = out.len() - ROOM + TAG_LEN;
        // EncryptedMessage: body (key, length, bytes) and nonce (key, length, 24 bytes).
        let contents_len = pb::message_len(body_len) + 2 + NONCE_LEN;
        // Envelope: sender and recipient (key, length, 32 bytes each), then contents.
        let total = 2 * (2 + 32) + pb::message_len(contents_len);
        if total > self.limits.max_envelope_len {
            return Err(Error::TooLarge {
                len: total,
                max: self.limits.max_envelope_len,
            });
        }
        let tag = self
            .cipher
            .encrypt_in_place_detached(GenericArray::from_slice(&nonce.0), b"", &mut out[ROOM..])
            // Only a non-empty associated data or a message over 256 GiB make sealing fail.
            .expect("crypto_box seals any message shorter than 256 GiB");
        // Fields in number order, as every protobuf encoder writes them, so this is the
        // canonical encoding of `proto::Envelope` (tests/wire.rs checks it). The header is
        // written backwards, ending where the ciphertext starts.
        let mut at = ROOM - TAG_LEN;
        out[at..ROOM].copy_from_slice(&tag);
        at = put_header_before(&mut out, at, 1, body_len);
        at = put_header_before(&mut out, at, 3, contents_len);
        for (field, key) in [(2, &self.remote.0), (1, &self.local.0)] {
            at -= 32;
            out[at..at + 32].copy_from_slice(key);
            at = put_header_before(&mut out, at, field, 32);
        }
        out.drain(..at);
        pb::put_bytes(&mut out, 2, &nonce.0);
        debug_assert_eq!(out.len(), total);
        Ok(out)
    }

    /// Opens an envelope from the remote: checks its size before decoding anything, its shape,
    /// its addressing, the box, the body and the keys bound inside it.
    pub fn open(&self, envelope: &[u8]) -> Result<Description, Error> {
        let Parsed {
            header,
            body,
            nonce,
        } = parse_envelope(envelope, &self.limits)?;
        if header.recipient != self.local {
            return Err(Error::NotForUs);
        }
        if header.sender != self.remote {
            return Err(Error::UnexpectedSender);
        }
        let mut buf = body.to_vec();
        let plaintext = self.open_in_place(&nonce, &mut buf)?;
        let body = Body::decode(plaintext, &self.limits)?;
        check_binding(&body, &header)?;
        Ok(body.description)
    }

    /// Seals raw bytes: exactly libsodium's `crypto_box_easy` (the 16-byte tag, then the
    /// ciphertext), under this channel's precomputed key.
    pub fn seal_box(&self, nonce: Nonce, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(TAG_LEN + plaintext.len());
        out.extend_from_slice(&[0; TAG_LEN]);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(GenericArray::from_slice(&nonce.0), b"", &mut out[TAG_LEN..])
            // Only a non-empty associated data or a message over 256 GiB make sealing fail.
            .expect("crypto_box seals any message shorter than 256 GiB");
        out[..TAG_LEN].copy_from_slice(&tag);
        out
    }

    /// Opens raw bytes sealed with `crypto_box_easy` by the remote (or by us: the key is the
    /// same both ways, which is why envelopes bind the keys inside).
    pub fn open_box(&self, nonce: Nonce, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let mut buf = sealed.to_vec();
        let plain_len = self.open_in_place(&nonce.0, &mut buf)?.len();
        buf.drain(..TAG_LEN);
        debug_assert_eq!(buf.len(), plain_len);
        Ok(buf)
    }

    /// Opens `tag || ciphertext` in place; returns the plaintext part.
    fn open_in_place<'a>(
        &self,
        nonce: &[u8; NONCE_LEN],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], Error> {
        if buf.len() < TAG_LEN {
            return Err(Error::Authentication);
        }
        let (tag, ciphertext) = buf.split_at_mut(TAG_LEN);
        self.cipher
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                b"",
                ciphertext,
                GenericArray::from_slice(tag),
            )
            .map_err(|_| Error::Authentication)?;
        Ok(ciphertext)
    }

    /// Opens an envelope and hands the description to `peer`, which must be the peer of this
    /// channel's keys. A rejected envelope never reaches the peer.
    pub fn deliver(
        &self,
        peer: &mut Peer,
        now: Instant,
        envelope: &[u8],
    ) -> Result<Disposition, Error> {
        if peer.local_key() != self.local || peer.remote_key() != self.remote {
            return Err(KeyError::PeerMismatch.into());
        }
        let description = self.open(envelope)?;
        Ok(peer.handle_description(now, &description)?)
    }
}

/// The keys sealed in the body must be the envelope's, in the same roles.
fn check_binding(b: &Body, h: &Header) -> Result<(), BindingError> {
    if b.sender == h.sender && b.recipient == h.recipient {
        Ok(())
    } else if b.sender == h.recipient && b.recipient == h.sender {
        Err(BindingError::Reflected)
    } else if b.sender != h.sender {
        Err(BindingError::Sender)
    } else {
        Err(BindingError::Recipient)
    }
}

/// Writes the key and length of a length-delimited field so that they end at `end`; returns
/// where they start.
fn put_header_before(out: &mut [u8], end: usize, field: u8, len: usize) -> usize {
    let mut header = [0u8; 11];
    header[0] = (field << 3) | 2;
    let mut n = 1;
    let mut v = len;
    loop {
        let more = v >= 0x80;
        header[n] = (v as u8 & 0x7f) | if more { 0x80 } else { 0 };
        n += 1;
        v >>= 7;
        if !more {
            break;
        }
    }
    out[end - n..end].copy_from_slice(&header[..n]);
    end - n
}
