//! Generates the gRPC code from `api/aurae/v0` with a vendored protoc, so that no
//! system protoc is needed to build Aurae.

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

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("aurae_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptor)
        .compile_with_config(config, &protos, &[api])?;
    Ok(())
}
