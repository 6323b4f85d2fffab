//! The bindings generated from `wit/`, in one place.
//!
//! There are two runs of bindgen over the same world: one whose waits block
//! the calling thread, for [`add_to_linker`](crate::add_to_linker), and one
//! whose `acquire` and `acquire-shared` are async host functions, for
//! [`add_to_linker_async`](crate::add_to_linker_async). Both map the `lock`
//! resource to the one [`LockHandle`](crate::LockHandle), and the WIT
//! `error` to the one [`Failure`] (wasmtime's trappable error types): each
//! run generates its own copy of the `error` variant, and [`wit_error!`]
//! turns a `Failure` into whichever copy, in each run's `convert_error`.

/// Waits block the calling thread.
pub(crate) mod blocking {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "locket:lock/imports",
        imports: { default: trappable },
        with: {
            "locket:lock/locket.lock": crate::handle::LockHandle,
        },
        trappable_error_type: {
            "locket:lock/locket.error" => crate::error::Failure,
        },
    });
}

/// `acquire` and `acquire-shared` are async; the rest is as in [`blocking`].
pub(crate) mod waiting_async {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "locket:lock/imports",
        imports: {
            "locket:lock/locket.[method]lock.acquire": async | trappable,
            "locket:lock/locket.[method]lock.acquire-shared": async | trappable,
            default: trappable,
        },
        with: {
            "locket:lock/locket.lock": crate::handle::LockHandle,
        },
        trappable_error_type: {
            "locket:lock/locket.error" => crate::error::Failure,
        },
        require_store_data_send: true,
    });
}

/// The `locket` interface as the blocking run generated it.
pub(crate) use blocking::locket::lock::locket as wit;
/// The `locket` interface as the async run generated it.
pub(crate) use waiting_async::locket::lock::locket as wit_async;

/// A [`Failure`] as the WIT `error` of one bindgen run (`$error`, the type
/// that run generated), or the trap it carries. Every run's copy of the
/// variant has the same cases, so this one mapping serves them all.
///
/// [`Failure`]: crate::error::Failure
macro_rules! wit_error {
    ($failure:expr, $error:ident) => {{
        use crate::error::{Failure, WitError};
        match $failure {
            Failure::Trap(trap) => Err(trap),
            Failure::Guest(e) => Ok(match e {
                WitError::Timeout => $error::Timeout,
                WitError::NotLocked => $error::NotLocked,
                WitError::Deadlock => $error::Deadlock,
                WitError::AccessDenied => $error::AccessDenied,
                WitError::InvalidPath(reason) => $error::InvalidPath(reason),
                WitError::Limit => $error::Limit,
                WitError::Io(message) => $error::Io(message),
            }),
        }
    }};
}
pub(crate) use wit_error;
