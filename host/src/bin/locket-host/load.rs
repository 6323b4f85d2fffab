//! How `run` loads a plugin: a precompiled artifact only when allowed, else
//! the cache's code for it, else compiled by the compiler `--compiler`
//! chooses (Winch for a first run, with Cranelift filling the cache in the
//! background).

use std::path::Path;

use anyhow::{anyhow, bail};
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

use crate::cache::Cache;
use crate::cli::Compiler;
use crate::engine::{Backend, compile_component, engine};
use crate::plugin_file::{Kind, Plugin};

/// How `run` may load a plugin.
pub(crate) struct Load {
    /// `--allow-precompiled`: a precompiled artifact may be run.
    pub(crate) allow_precompiled: bool,
    /// `--no-cache` not given: use the cache of precompiled plugins.
    pub(crate) cache: bool,
    /// `--fuel`: the code must meter fuel, which only Cranelift's does.
    pub(crate) fuel: bool,
    /// `--compiler`.
    pub(crate) compiler: Compiler,
}

/// Where a run's native code came from, for `--stats` and the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Cranelift's, mapped from the cache.
    Cached,
    /// Cranelift's, from a file given with `--allow-precompiled`.
    Precompiled,
    /// Cranelift's, compiled for this run.
    Cranelift,
    /// Winch's, compiled for this run; `filling` if Cranelift is compiling
    /// the plugin into the cache meanwhile, for the next runs.
    Winch { filling: bool },
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Code::Cached => "Cranelift, from the cache",
            Code::Precompiled => "Cranelift, precompiled",
            Code::Cranelift => "Cranelift, compiled for this run",
            Code::Winch { filling: true } => {
                "Winch, compiled for this run (Cranelift compiles into the cache in the background)"
            }
            Code::Winch { filling: false } => "Winch, compiled for this run",
        })
    }
}

/// A plugin ready to link: its code and the engine the code is for.
pub(crate) struct Loaded {
    pub(crate) engine: Engine,
    pub(crate) component: Component,
    pub(crate) code: Code,
}

/// Loads the plugin: a precompiled artifact if allowed, else from the cache,
/// else compiled as `--compiler` says.
pub(crate) fn load(plugin: &Path, how: &Load) -> anyhow::Result<Loaded> {
    let file = Plugin::open(plugin)?;
    let cranelift = || engine(how.fuel, Backend::Cranelift);
    let loaded = |engine, component, code| Loaded {
        engine,
        component,
        code,
    };
    match file.kind {
        Kind::Precompiled if how.allow_precompiled => {
            let hint = format!(
                "locket-host compile{} PLUGIN.wasm -o {}",
                if how.fuel { " --fuel" } else { "" },
                plugin.display()
            );
            let cranelift = cranelift()?;
            let component = load_precompiled(&cranelift, plugin, &hint)?;
            return Ok(loaded(cranelift, component, Code::Precompiled));
        }
        Kind::Precompiled => bail!(
            "{} is a precompiled artifact, not a WebAssembly file; running one needs \
             --allow-precompiled, since its native code is trusted, not checked",
            plugin.display()
        ),
        Kind::Wasm => {}
    }
    if how.compiler == Compiler::Winch {
        let winch = engine(false, Backend::Winch)?;
        let component = compile_component(&winch, plugin, &file.bytes()?)?;
        return Ok(loaded(winch, component, Code::Winch { filling: false }));
    }
    let cranelift = cranelift()?;
    let Some(cache) = how.cache.then(Cache::open).flatten() else {
        let component = compile_component(&cranelift, plugin, &file.bytes()?)?;
        return Ok(loaded(cranelift, component, Code::Cranelift));
    };
    let entry = cache.entry(&cranelift, &file)?;
    if let Some(component) = cache.lookup(&cranelift, &entry) {
        return Ok(loaded(cranelift, component, Code::Cached));
    }
    // A miss: the bytes are read once, for whichever compiler takes them.
    let bytes = file.bytes()?;
    if how.compiler == Compiler::Auto && !how.fuel {
        let winch = engine(false, Backend::Winch)?;
        match compile_component(&winch, plugin, &bytes) {
            Ok(component) => {
                let filling = match cache.start_filling(plugin, how.fuel) {
                    Ok(pid) => {
                        tracing::debug!(pid, "compiling with Cranelift into the cache");
                        true
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot compile into the cache");
                        false
                    }
                };
                return Ok(loaded(winch, component, Code::Winch { filling }));
            }
            // Cranelift may take what Winch cannot (some proposals), and
            // names the problem if the plugin is not valid.
            Err(e) => tracing::debug!(error = %e, "Winch cannot compile the plugin"),
        }
    }
    let component = cache.compile_and_store(&cranelift, plugin, &bytes)?;
    Ok(loaded(cranelift, component, Code::Cranelift))
}

/// Loads a precompiled component the user vouched for with
/// `--allow-precompiled`, refusing anything this engine did not make.
fn load_precompiled(
    engine: &Engine,
    plugin: &Path,
    recompile_hint: &str,
) -> anyhow::Result<Component> {
    let shown = plugin.display();
    match Engine::detect_precompiled_file(plugin) {
        Ok(Some(Precompiled::Component)) => {}
        Ok(Some(Precompiled::Module)) => {
            bail!("{shown} is a precompiled core module, not a component")
        }
        Ok(None) => {
            bail!("{shown} is not a precompiled component made by `locket-host compile`")
        }
        Err(e) => bail!("cannot read {shown}: {}", e.root_cause()),
    }
    // SAFETY: wasmtime requires the artifact to be one it made, and to stay
    // unchanged while loaded. The user passed --allow-precompiled, declaring
    // the file trusted and left alone while it runs (as `wasmtime run
    // --allow-precompiled` does); wasmtime itself refuses artifacts made by
    // another version or with other settings.
    unsafe { Component::deserialize_file(engine, plugin) }.map_err(|e| {
        anyhow!(
            "{shown} cannot be loaded ({}); if it was compiled by another build of locket-host \
             or with other options, recompile it with `{recompile_hint}`",
            e.root_cause()
        )
    })
}
