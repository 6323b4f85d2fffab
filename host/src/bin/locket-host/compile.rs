//! `locket-host compile`: a plugin's precompiled artifact, written ahead of
//! time for `run --allow-precompiled`.

use anyhow::Context;

use crate::cache::write_atomically;
use crate::cli::CompileArgs;
use crate::engine::{Backend, compile_component, engine};
use crate::plugin_file::{Kind, Plugin};

/// Writes the artifact of `args.plugin` to `args.output`.
pub(crate) fn compile(args: &CompileArgs) -> anyhow::Result<()> {
    let file = Plugin::open(&args.plugin)?;
    if let Kind::Precompiled = file.kind {
        anyhow::bail!(
            "{} is already a precompiled artifact",
            args.plugin.display()
        );
    }
    let bytes = file.bytes()?;
    let engine = engine(args.fuel, Backend::Cranelift)?;
    let component = compile_component(&engine, &args.plugin, &bytes)?;
    let serialized = component.serialize().map_err(anyhow::Error::from)?;
    write_atomically(&args.output, &serialized)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(())
}
