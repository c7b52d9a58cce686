//! Errors of the wire format: one [`Error`] with nested domain enums.

/// Everything that can go wrong sealing or opening an envelope. An envelope that returns an
/// error was never handed to the [`Peer`](crate::Peer), so it changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The envelope is longer than [`Limits::max_envelope_len`](super::Limits) (checked before
    /// decoding anything).
    #[error("envelope of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Length of the envelope.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The cleartext envelope is malformed.
    #[error("malformed envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The envelope names another recipient than our key.
    #[error("envelope is not addressed to us")]
    NotForUs,
    /// The envelope names another sender than the peer of this channel.
    #[error("envelope is not from the expected peer")]
    UnexpectedSender,
    /// The box did not open: wrong key, or the ciphertext, tag or nonce was altered.
    #[error("authentication failed")]
    Authentication,
    /// The box opened, but the keys bound inside it contradict the envelope.
    #[error("binding mismatch: {0}")]
    Binding(#[from] BindingError),
    /// The sealed body is malformed or breaks a limit (received, or about to be sealed).
    #[error("invalid body: {0}")]
    Body(#[from] BodyError),
    /// A key cannot be used.
    #[error("bad key: {0}")]
    Key(#[from] KeyError),
    /// The opened description was handed to the peer, which rejected it.
    #[error(transparent)]
    Peer(#[from] crate::Error),
}

/// A malformed cleartext envelope.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not a well-formed protobuf `Envelope`: broken framing, a wrong wire type for a known
    /// field, or `contents` given twice.
    #[error("malformed protobuf")]
    Framing,
    /// The sender or recipient key is not 32 bytes long.
    #[error("{field} key has {len} bytes, not 32")]
    KeyLength {
        /// `"sender"` or `"recipient"`.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The nonce is not 24 bytes long.
    #[error("nonce has {0} bytes, not 24")]
    NonceLength(usize),
    /// The envelope has no `contents`.
    #[error("no contents")]
    MissingContents,
}

/// The authenticated keys inside the box contradict the cleartext envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// Our own message came back with sender and recipient swapped (the box key is symmetric,
    /// so it opens).
    #[error("reflected: this is our own message, with sender and recipient swapped")]
    Reflected,
    /// The sealed sender key differs from the envelope's.
    #[error("sealed sender differs from the envelope's")]
    Sender,
    /// The sealed recipient key differs from the envelope's.
    #[error("sealed recipient differs from the envelope's")]
    Recipient,
}

/// A sealed body that is malformed or breaks a limit of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Not a well-formed protobuf `SessionDescription`: broken framing, a wrong wire type for
    /// a known field, a string that is not UTF-8, or a singular message field given twice.
    #[error("malformed protobuf")]
    Framing,
    /// A bound key is not 32 bytes long.
    #[error("bound {field} key has {len} bytes, not 32")]
    KeyLength {
        /// `"sender"` or `"recipient"`.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// No credentials.
    #[error("no credentials")]
    MissingCredentials,
    /// ufrag or pwd is empty or longer than [`MAX_CREDENTIAL_LEN`](crate::MAX_CREDENTIAL_LEN).
    #[error("{field} has {len} bytes, allowed are 1 to {max}")]
    CredentialLength {
        /// `"ufrag"` or `"pwd"`.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More candidates than [`Limits::max_candidates`](super::Limits) (those past the limit
    /// are counted, never decoded).
    #[error("{count} candidates exceed the limit of {max}")]
    TooManyCandidates {
        /// Candidates in the body.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A candidate is invalid.
    #[error("candidate {index}: {error}")]
    Candidate {
        /// Its position in the list.
        index: usize,
        /// What is wrong with it.
        error: CandidateError,
    },
}

/// An invalid candidate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CandidateError {
    /// Unknown or unspecified `CandidateType`.
    #[error("unknown candidate type {0}")]
    Type(i32),
    /// Unknown or unspecified `NetworkType`.
    #[error("unknown network type {0}")]
    NetworkType(i32),
    /// The network type's address family is not the address's.
    #[error("network type does not match the address family")]
    FamilyMismatch,
    /// The foundation is empty, longer than 32 or not made of ice-chars (RFC 8445 §5.1.1.3).
    #[error("foundation is empty, too long or not ice-chars")]
    Foundation,
    /// The component id is outside 1 to 256.
    #[error("component {0} outside 1 to 256")]
    Component(i64),
    /// The priority is outside 0 to 2^31 - 1.
    #[error("priority {0} outside 0 to 2^31 - 1")]
    Priority(i64),
    /// The address is not an IP address.
    #[error("address is not an IP address")]
    Address,
    /// The port is outside 0 to 65535.
    #[error("port {0} outside 0 to 65535")]
    Port(i32),
    /// Unknown `TcpType`.
    #[error("unknown TCP type {0}")]
    TcpType(i32),
    /// A UDP candidate with a TCP type.
    #[error("TCP type on a UDP candidate")]
    TcpTypeOnUdp,
}

/// A key that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The peer's public key is a low-order point: the shared key would be all zeros, known to
    /// anyone (libsodium's `crypto_box_beforenm` refuses it too).
    #[error("public key of low order: the shared key would be public")]
    LowOrder,
    /// The peer's public key has a small-order component or is not on the curve, which no
    /// honest X25519 public key has.
    #[error("public key is not in the prime-order subgroup")]
    NotPrimeOrder,
    /// Our own and the peer's public keys are equal.
    #[error("local and remote public keys are equal")]
    EqualKeys,
    /// The peer's public key is not canonically encoded (bit 255 set, or a u-coordinate not
    /// below 2^255 − 19): the same key as a canonical one under other bytes.
    #[error("public key not canonically encoded")]
    NonCanonical,
    /// The [`Peer`](crate::Peer) handed to the channel has other keys than the channel.
    #[error("the peer's keys are not the channel's")]
    PeerMismatch,
}
