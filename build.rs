//! Compiles the wire format's `.proto` files (module `wire`) with `protox`, a protobuf compiler
//! written in Rust, so that building the crate needs no `protoc` binary.

use std::io;

fn main() -> io::Result<()> {
    const FILES: [&str; 1] = ["proto/icepact/wire/v1/wire.proto"];
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(FILES, ["proto"]).map_err(io::Error::other)?;
    prost_build::Config::new().compile_fds(descriptors)
}
