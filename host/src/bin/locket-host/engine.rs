//! The engines that run and compile plugins, and compiling a plugin with
//! one. `run` and `compile` must configure them the same way, or a compiled
//! artifact would not load.

use std::path::Path;

use anyhow::anyhow;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel, RegallocAlgorithm, Strategy};

/// Which of wasmtime's compilers makes a plugin's native code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Cranelift: optimised code, but an 18 MB plugin takes seconds to
    /// compile. Every cached and precompiled artifact is Cranelift's.
    Cranelift,
    /// Winch, the baseline compiler: one pass per function, several times
    /// faster to compile, slower code. It cannot meter fuel.
    Winch,
}

/// The engine for running (or compiling) plugins with `backend`. Epoch
/// interruption is always compiled in, so that `--timeout` does not change
/// the code and one artifact serves runs with and without it; fuel metering
/// only with `--fuel`, since it costs time on every block.
pub(crate) fn engine(fuel: bool, backend: Backend) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(fuel);
    match backend {
        Backend::Cranelift => {
            config.strategy(Strategy::Cranelift);
        }
        Backend::Winch => {
            // Winch compiles the functions; Cranelift still compiles the
            // trampolines between the host and them, one per function that
            // can be called from outside (thousands in a Python plugin),
            // where its quickest settings halve the compile.
            config
                .strategy(Strategy::Winch)
                .cranelift_opt_level(OptLevel::None)
                .cranelift_regalloc_algorithm(RegallocAlgorithm::SinglePass);
        }
    }
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// Compiles a component, with a one-line reason when it is not valid.
pub(crate) fn compile_component(
    engine: &Engine,
    plugin: &Path,
    bytes: &[u8],
) -> anyhow::Result<Component> {
    Component::new(engine, bytes).map_err(|e| {
        anyhow!(
            "{} is not a valid component: {}",
            plugin.display(),
            e.root_cause()
        )
    })
}
