//! The Aurae API as Rust types and tonic services, generated from `api/aurae/v0`.
//!
//! This crate only holds generated code and the codec of its servers: the `.proto`
//! files are the single source of truth for every client, Rust or not.

pub mod codec;

/// Version 0 of the Aurae API.
pub mod v0 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("aurae.v0");
    include!(concat!(env!("OUT_DIR"), "/servers/aurae.v0.rs"));
}

/// Encoded `FileDescriptorSet` of the Aurae API, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("aurae_descriptor");
