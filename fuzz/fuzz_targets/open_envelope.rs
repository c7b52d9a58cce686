//! Opens arbitrary bytes as an envelope from A to B: never a panic; what opens is a
//! description that seals and opens again to itself.
#![no_main]

use std::sync::OnceLock;

use icepact::wire::{Channel, Nonce, SecretKey};
use libfuzzer_sys::fuzz_target;

fn channels() -> &'static (Channel, Channel) {
    static CHANNELS: OnceLock<(Channel, Channel)> = OnceLock::new();
    CHANNELS.get_or_init(|| {
        let (a, b) = (
            SecretKey::from_bytes([0x5a; 32]),
            SecretKey::from_bytes([0xa5; 32]),
        );
        (
            Channel::new(&a, b.public_key()).expect("fixed valid keys"),
            Channel::new(&b, a.public_key()).expect("fixed valid keys"),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (a_to_b, b_from_a) = channels();
    // Random bytes almost never authenticate; also try them as the sealed plaintext of a
    // correctly sealed envelope, so the body parser behind the box is reached.
    let _ = b_from_a.open(data);
    if let Ok(d) = b_from_a.open(&wrap(a_to_b, data)) {
        let again = a_to_b
            .seal(&d, Nonce([1; 24]))
            .expect("an opened description can be sealed");
        assert_eq!(b_from_a.open(&again).expect("and opened"), d);
    }
});

/// An envelope from A to B whose sealed plaintext is `plaintext`.
fn wrap(a_to_b: &Channel, plaintext: &[u8]) -> Vec<u8> {
    use prost::Message as _;
    let nonce = Nonce([2; 24]);
    icepact::wire::proto::Envelope {
        sender: a_to_b.local_key().0.to_vec(),
        recipient: a_to_b.remote_key().0.to_vec(),
        contents: Some(icepact::wire::proto::EncryptedMessage {
            body: a_to_b.seal_box(nonce, plaintext),
            nonce: nonce.0.to_vec(),
        }),
    }
    .encode_to_vec()
}
