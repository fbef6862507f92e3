//! Compiles the protocol subset with a pure-Rust protobuf compiler, so building the double needs
//! no system `protoc`.

const PROTO_DIR: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "proto/shared.proto",
    "proto/streams.proto",
    "proto/serverfeatures.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(PROTO_FILES, [PROTO_DIR])?;
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .bytes([".event_store.client.StreamIdentifier.stream_name"])
        .compile_fds(descriptors)?;
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
