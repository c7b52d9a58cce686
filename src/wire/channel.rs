//! Sealing and opening envelopes between one local key and one remote key.

use std::fmt;
use std::time::Instant;

use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::AeadInPlace;
use crypto_box::SalsaBox;
use curve25519_dalek::montgomery::MontgomeryPoint;
use prost::Message as _;
use rand_core::CryptoRng;

use super::body::{body_proto, Body};
use super::error::{BindingError, EnvelopeError, Error, KeyError};
use super::{proto, Limits};
use crate::{Description, Disposition, Peer, PublicKey};

/// Length of a Poly1305 tag (libsodium `crypto_box_MACBYTES`).
pub const TAG_LEN: usize = 16;
/// Length of a nonce (libsodium `crypto_box_NONCEBYTES`).
pub const NONCE_LEN: usize = 24;

/// A 24-byte `crypto_box` nonce. It must never repeat for the same pair of keys: take it from a
/// cryptographic RNG ([`Nonce::random`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl Nonce {
    /// A nonce drawn from `rng` (the crate reads no global RNG).
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

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.public_key().as_bytes())
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
struct Parsed {
    header: Header,
    body: Vec<u8>,
    nonce: [u8; NONCE_LEN],
}

fn parse_envelope(envelope: &[u8], limits: &Limits) -> Result<Parsed, Error> {
    if envelope.len() > limits.max_envelope_len {
        return Err(Error::TooLarge {
            len: envelope.len(),
            max: limits.max_envelope_len,
        });
    }
    let e = proto::Envelope::decode(envelope).map_err(EnvelopeError::Protobuf)?;
    let key = |field, bytes: &[u8]| {
        <[u8; 32]>::try_from(bytes)
            .map(PublicKey)
            .map_err(|_| EnvelopeError::KeyLength {
                field,
                len: bytes.len(),
            })
    };
    let sender = key("sender", &e.sender)?;
    let recipient = key("recipient", &e.recipient)?;
    let contents = e.contents.ok_or(EnvelopeError::MissingContents)?;
    let nonce = <[u8; NONCE_LEN]>::try_from(contents.nonce.as_slice())
        .map_err(|_| EnvelopeError::NonceLength(contents.nonce.len()))?;
    Ok(Parsed {
        header: Header { sender, recipient },
        body: contents.body,
        nonce,
    })
}

/// The sealing context between our key and one remote key: the `crypto_box` shared key is
/// computed once (libsodium's `crypto_box_beforenm`) and reused for every envelope.
pub struct Channel {
    local: PublicKey,
    remote: PublicKey,
    cipher: SalsaBox,
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
        let local = secret.public_key();
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
            cipher,
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

    /// Seals `description` for the remote with a nonce from `rng`: the encoded envelope.
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        description: &Description,
        rng: &mut R,
    ) -> Result<Vec<u8>, Error> {
        self.seal_with_nonce(description, Nonce::random(rng))
    }

    /// Seals `description` with the given nonce, which must never repeat for this pair of keys.
    ///
    /// Refuses a description that the remote (with the same limits) would reject.
    pub fn seal_with_nonce(
        &self,
        description: &Description,
        nonce: Nonce,
    ) -> Result<Vec<u8>, Error> {
        let message = body_proto(self.local, self.remote, description, &self.limits)?;
        let plain_len = message.encoded_len();
        let body_len = TAG_LEN + plain_len;
        // EncryptedMessage: body (tag, length, bytes) and nonce (tag, length, 24 bytes).
        let contents_len = 1 + varint_len(body_len) + body_len + 2 + NONCE_LEN;
        // Envelope: sender and recipient (tag, length, 32 bytes each), then contents.
        let total = 2 * (2 + 32) + 1 + varint_len(contents_len) + contents_len;
        if total > self.limits.max_envelope_len {
            return Err(Error::TooLarge {
                len: total,
                max: self.limits.max_envelope_len,
            });
        }
        // The fields in field-number order, as every protobuf encoder writes them, so this is
        // the canonical encoding of `proto::Envelope` (tests/wire.rs checks it).
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&[0x0a, 32]);
        out.extend_from_slice(&self.local.0);
        out.extend_from_slice(&[0x12, 32]);
        out.extend_from_slice(&self.remote.0);
        out.push(0x1a);
        put_varint(&mut out, contents_len);
        out.push(0x0a);
        put_varint(&mut out, body_len);
        let tag_at = out.len();
        out.extend_from_slice(&[0; TAG_LEN]);
        message
            .encode(&mut out)
            // A Vec grows as needed, so it never runs out of capacity.
            .expect("encoding into a Vec cannot run out of space");
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                GenericArray::from_slice(&nonce.0),
                b"",
                &mut out[tag_at + TAG_LEN..],
            )
            // Only a non-empty associated data or a message over 256 GiB make sealing fail.
            .expect("crypto_box seals any message shorter than 256 GiB");
        out[tag_at..tag_at + TAG_LEN].copy_from_slice(&tag);
        out.extend_from_slice(&[0x12, NONCE_LEN as u8]);
        out.extend_from_slice(&nonce.0);
        debug_assert_eq!(out.len(), total);
        Ok(out)
    }

    /// Opens an envelope from the remote: checks its size before decoding it, its shape, its
    /// addressing, the box, the keys bound inside and the body.
    pub fn open(&self, envelope: &[u8]) -> Result<Description, Error> {
        let Parsed {
            header,
            mut body,
            nonce,
        } = parse_envelope(envelope, &self.limits)?;
        if header.recipient != self.local {
            return Err(Error::NotForUs);
        }
        if header.sender != self.remote {
            return Err(Error::UnexpectedSender);
        }
        let plaintext = self.open_in_place(&nonce, &mut body)?;
        let message = Body::decode_proto(plaintext, &self.limits)?;
        check_binding(&message, &header)?;
        Ok(Body::from_proto(message)?.description)
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
fn check_binding(m: &proto::SessionDescription, h: &Header) -> Result<(), BindingError> {
    let (sender, recipient) = (m.sender.as_slice(), m.recipient.as_slice());
    if sender == h.sender.0 && recipient == h.recipient.0 {
        Ok(())
    } else if sender == h.recipient.0 && recipient == h.sender.0 {
        Err(BindingError::Reflected)
    } else if sender != h.sender.0 {
        Err(BindingError::Sender)
    } else {
        Err(BindingError::Recipient)
    }
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}
