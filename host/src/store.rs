//! The store data of one plugin instance, for embedders that need nothing
//! else in it: WASI and `locket` over one resource table, and limits.

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::ctx::{LocketCtx, LocketCtxView, LocketView};

/// A plugin's store data: what `wasmtime_wasi` and
/// [`add_to_linker`](crate::add_to_linker) need, sharing one resource table.
///
/// `locket-host run`, the `serve` example and the tests all use this type.
/// An embedder with more state of its own writes its own type instead, and
/// implements [`LocketView`] for it as this one does.
pub struct PluginState {
    /// The guest's WASI context.
    pub wasi: WasiCtx,
    /// The guest's `locket` context.
    pub locket: LocketCtx,
    /// The resource table that WASI and `locket` share.
    pub table: ResourceTable,
    /// Memory and table limits, for [`wasmtime::Store::limiter`]; none unless
    /// set.
    pub limits: StoreLimits,
}

impl PluginState {
    /// State with an empty resource table and no limits.
    #[must_use]
    pub fn new(wasi: WasiCtx, locket: LocketCtx) -> Self {
        Self {
            wasi,
            locket,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new().build(),
        }
    }

    /// The same, with `limits` on memory and tables.
    #[must_use]
    pub fn with_limits(mut self, limits: StoreLimits) -> Self {
        self.limits = limits;
        self
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl LocketView for PluginState {
    fn locket(&mut self) -> LocketCtxView<'_> {
        LocketCtxView {
            ctx: &mut self.locket,
            table: &mut self.table,
        }
    }
}
