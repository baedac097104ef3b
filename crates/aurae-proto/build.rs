//! Generates the gRPC code from `api/aurae/v0` with a vendored protoc, so that no
//! system protoc is needed to build Aurae.
//!
//! Two passes: the messages and clients with tonic's own codec, then the servers alone
//! with [`RequestCodec`](../src/codec.rs), which answers a request that does not decode
//! with INVALID_ARGUMENT (tonic's codec says INTERNAL, on either side). A client keeps
//! INTERNAL for a response that does not decode: that one is the server's fault.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in: a build script binary may outlive its checkout.
    let api = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../api");
    let protos: Vec<PathBuf> = std::fs::read_dir(api.join("aurae/v0"))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    println!("cargo:rerun-if-changed={}", api.join("aurae/v0").display());

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_server(false)
        .file_descriptor_set_path(out.join("aurae_descriptor.bin"))
        .compile_with_config(protoc_config()?, &protos, std::slice::from_ref(&api))?;

    let servers = out.join("servers");
    std::fs::create_dir_all(&servers)?;
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(&servers)
        .extern_path(".aurae.v0", "crate::v0")
        .codec_path("crate::codec::RequestCodec")
        .compile_with_config(protoc_config()?, &protos, std::slice::from_ref(&api))?;
    Ok(())
}

fn protoc_config() -> Result<prost_build::Config, Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    Ok(config)
}
