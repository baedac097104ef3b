//! aurae-runtime: what runs in aurae space, below the API.
//!
//! It owns the plain types of a workload ([`spec`]), the control groups that bound it
//! ([`cgroup`], cgroup v1 and v2 behind one interface chosen by what the host mounts), its
//! logs ([`logs`]) and the translation of OCI runtime bundles ([`oci`]). It never spawns a
//! process (auraed's supervisor is the one owner of children) and knows nothing of gRPC.
#![deny(missing_docs)]

pub mod capabilities;
pub mod cgroup;
pub mod logs;
pub mod oci;
pub mod spec;
