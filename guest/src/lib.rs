//! The guest SDK for components that import `locket:lock/locket`.
//!
//! This crate is a placeholder: the SDK arrives with the host issue.
