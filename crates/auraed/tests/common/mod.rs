//! Test support: the shared test kit (a real auraed on a temporary socket, and the real
//! `aurae` CLI).
#![allow(unused_imports)]

pub use aurae_testkit::*;
