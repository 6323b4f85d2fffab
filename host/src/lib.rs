//! The wasmtime host for locket's WIT interface.
//!
//! This crate is a placeholder: the host arrives with the host issue. It will
//! implement `locket:lock/locket` on top of the native [`locket`] crate.
