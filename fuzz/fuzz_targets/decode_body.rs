//! Decodes arbitrary bytes as a sealed body: never a panic; whatever the fast decoder accepts,
//! the prost-generated reference accepts too, equal; and it re-encodes to itself.
#![no_main]

use icepact::wire::{proto, Body, Limits};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(body) = Body::decode(data, &limits) {
        let m = proto::SessionDescription::decode(data).expect("reference accepts what we accept");
        assert_eq!(Body::from_proto(m, &limits).as_ref(), Ok(&body));
        let bytes = body.encode(&limits).expect("a decoded body can be encoded");
        assert_eq!(Body::decode(&bytes, &limits).as_ref(), Ok(&body));
    }
});
