//! The engine that runs and compiles plugins. `run` and `compile` must
//! configure it the same way, or a compiled artifact would not load.

use wasmtime::{Config, Engine};

/// The engine for running (or compiling) plugins. Epoch interruption is
/// always compiled in, so that `--timeout` does not change the code and one
/// artifact serves runs with and without it; fuel metering only with `--fuel`,
/// since it costs time on every block.
pub(crate) fn engine(fuel: bool) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(fuel);
    Engine::new(&config).map_err(anyhow::Error::from)
}
