//! Adding the `locket` interface to a wasmtime linker: one call, for a
//! blocking or an async engine.

use wasmtime::component::{HasData, Linker};

use crate::bindings::{wit, wit_async};
use crate::ctx::{LocketCtxView, LocketView};

/// The marker that tells the bindings what a store's `locket` data is.
struct HasLocket;

impl HasData for HasLocket {
    type Data<'a> = LocketCtxView<'a>;
}

/// Adds the `locket:lock/locket` interface to `linker`, for stores whose data
/// implements [`LocketView`].
///
/// # Errors
///
/// If the linker already defines the interface.
pub fn add_to_linker<T: LocketView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasLocket>(linker, T::locket)
}

/// Adds the `locket:lock/locket` interface to `linker` for an engine with
/// async support, so that a guest waiting for a lock does not block the
/// executor thread.
///
/// `acquire` and `acquire-shared` become async host functions that wait
/// through [`locket::Lock::acquire_with_async`]: many instances can wait at
/// once on a small runtime. Use it with `wasmtime_wasi::p2::add_to_linker_async`
/// and `instantiate_async`.
///
/// Cancelling a waiting guest (dropping the future of its call, for example
/// with `tokio::time::timeout` or by aborting its task) cancels the wait; the
/// lock is never left held by it. Dropping the store then releases whatever
/// the guest still holds. A guest running wasm code is stopped the usual way,
/// with epoch interruption or fuel.
///
/// # Errors
///
/// If the linker already defines the interface.
pub fn add_to_linker_async<T: LocketView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit_async::add_to_linker::<T, HasLocket>(linker, T::locket)
}
