//! The bindings generated from `wit/`, in one place.
//!
//! There are two runs of bindgen over the same world: one whose waits block
//! the calling thread, for [`add_to_linker`](crate::add_to_linker), and one
//! whose `acquire` and `acquire-shared` are async host functions, for
//! [`add_to_linker_async`](crate::add_to_linker_async). Both map the `lock`
//! resource to the one [`LockHandle`](crate::LockHandle). The WIT `error`
//! variant is [`WitError`], from the blocking run; wasmtime's bindgen can
//! point a resource at an existing type but not a variant, so the async run
//! has its own copy of the same cases, which only [`to_async`] ever makes.

/// Waits block the calling thread.
pub(crate) mod blocking {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "locket:lock/imports",
        imports: { default: trappable },
        with: {
            "locket:lock/locket.lock": crate::ctx::LockHandle,
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
            "locket:lock/locket.lock": crate::ctx::LockHandle,
        },
        require_store_data_send: true,
    });
}

/// The `locket` interface as the blocking run generated it.
pub(crate) use blocking::locket::lock::locket as wit;
/// The `locket` interface as the async run generated it.
pub(crate) use waiting_async::locket::lock::locket as wit_async;

/// The guest-visible error of the `locket` interface: the WIT `error`
/// variant. A guest sees one of these; a bug in the host traps instead.
pub use wit::Error as WitError;

/// The same error as the async run's copy of the variant.
pub(crate) fn to_async(e: WitError) -> wit_async::Error {
    use wit_async::Error as Async;
    match e {
        WitError::Timeout => Async::Timeout,
        WitError::NotLocked => Async::NotLocked,
        WitError::Deadlock => Async::Deadlock,
        WitError::AccessDenied => Async::AccessDenied,
        WitError::InvalidPath(reason) => Async::InvalidPath(reason),
        WitError::Limit => Async::Limit,
        WitError::Io(message) => Async::Io(message),
    }
}
