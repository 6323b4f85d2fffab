//! What the embedding tests share: the store data an embedder writes, WASI
//! and locket over one resource table.

use locket_host::{LocketCtx, LocketCtxView, LocketView};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub struct State {
    pub wasi: WasiCtx,
    pub locket: LocketCtx,
    pub table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl LocketView for State {
    fn locket(&mut self) -> LocketCtxView<'_> {
        LocketCtxView {
            ctx: &mut self.locket,
            table: &mut self.table,
        }
    }
}
