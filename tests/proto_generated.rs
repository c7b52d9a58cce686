//! The protobuf code in `src/wire/generated/` is what `prost-build` generates from
//! `proto/icepact/wire/v1/wire.proto` today. It is checked in so that users of the crate
//! compile no protobuf compiler; this test regenerates it (with `protox`, no `protoc` needed)
//! and fails on any difference. After changing the schema, run
//! `ICEPACT_REGENERATE=1 cargo test --test proto_generated` to write the new file (before the
//! crate's code uses a new field: the test needs the crate to build).

use std::path::Path;

#[test]
fn checked_in_protobuf_code_is_what_prost_generates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("proto_generated");
    std::fs::create_dir_all(&out).unwrap();
    let descriptors = protox::compile(
        [root.join("proto/icepact/wire/v1/wire.proto")],
        [root.join("proto")],
    )
    .expect("the schema compiles");
    prost_build::Config::new()
        .out_dir(&out)
        .compile_fds(descriptors)
        .expect("prost generates code");
    let fresh = std::fs::read_to_string(out.join("icepact.wire.v1.rs")).unwrap();
    let checked_in_path = root.join("src/wire/generated/icepact.wire.v1.rs");
    if std::env::var_os("ICEPACT_REGENERATE").is_some() {
        std::fs::write(&checked_in_path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap();
    assert!(
        checked_in == fresh,
        "src/wire/generated/icepact.wire.v1.rs is stale: run \
         `ICEPACT_REGENERATE=1 cargo test --test proto_generated`"
    );
}
