//! Compiled plugins: the cache of precompiled artifacts that `run` keeps, and
//! the `.cwasm` files that `locket-host compile` writes.
//!
//! Both are wasmtime's serialized form: native code in an ELF image that
//! `Component::deserialize_file` maps into memory, copy-on-write, so a large
//! plugin starts in milliseconds instead of seconds. Loading one runs its
//! native code, so it must come from a place we trust: our own cache
//! directory (never one that every user may write to), or a file the user
//! names together with `--allow-precompiled`.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

/// Bumped when the cache's naming or contents change meaning.
const CACHE_FORMAT: &str = "locket-host precompiled cache 1";

/// The start of an ELF file, which is what wasmtime's precompiled artifacts are.
const ELF_MAGIC: &[u8] = b"\x7fELF";
/// The start of a WebAssembly binary, module or component.
const WASM_MAGIC: &[u8] = b"\0asm";

/// The directory of precompiled artifacts, keyed by plugin content and engine.
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache in `$LOCKET_CACHE_DIR`, else `$XDG_CACHE_HOME/locket-host`,
    /// else `~/.cache/locket-host`; `None` (with a note in the log) when
    /// there is no such place or it is not safe to load code from.
    pub(crate) fn open() -> Option<Self> {
        let dir = match std::env::var_os("LOCKET_CACHE_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
                Some(base) => PathBuf::from(base).join("locket-host"),
                None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/locket-host"),
            },
        };
        let dir = std::path::absolute(&dir).ok()?;
        if let Err(e) = fs::create_dir_all(&dir) {
            tracing::debug!(?dir, error = %e, "no compilation cache");
            return None;
        }
        if let Some(reason) = untrusted(&dir) {
            eprintln!(
                "locket-host: warning: not using the compilation cache {}: {reason}",
                dir.display()
            );
            return None;
        }
        Some(Self { dir })
    }

    /// The plugin compiled for `engine`: mapped from the cache when it is
    /// there, else compiled and stored for the next run.
    pub(crate) fn load(&self, engine: &Engine, plugin: &Path) -> anyhow::Result<Component> {
        // Hash the file as a stream: on a hit its bytes are never needed.
        let entry = |key: String| self.dir.join(format!("{key}.cwasm"));
        let hashed = hash_file(engine, plugin)
            .with_context(|| format!("cannot read {}", plugin.display()))?;
        let cached = entry(hashed);
        if cached.exists() {
            // SAFETY: the entry is in our own cache directory, which only we
            // (and the owner of the directory) write, under a name derived
            // from the plugin's content and this engine's configuration, and
            // wasmtime checks that it was made by this version and settings.
            match unsafe { Component::deserialize_file(engine, &cached) } {
                Ok(component) => {
                    tracing::debug!(entry = ?cached, "loaded the plugin from the cache");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::debug!(entry = ?cached, error = %e, "unusable cache entry; recompiling");
                }
            }
        }
        let bytes = read(plugin)?;
        let component = compile(engine, plugin, &bytes)?;
        // Named by the bytes compiled, in case the file changed meanwhile.
        let entry = entry(key(engine, &bytes));
        match component.serialize() {
            Ok(serialized) => {
                if let Err(e) = write_atomically(&entry, &serialized) {
                    tracing::debug!(?entry, error = %e, "could not fill the cache");
                } else {
                    tracing::debug!(?entry, "cached the compiled plugin");
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not serialize the plugin"),
        }
        Ok(component)
    }
}

/// The cache key of the file at `path`, hashed as it is read.
fn hash_file(engine: &Engine, path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut key = Key::new(engine);
    let mut buffer = vec![0; 256 * 1024];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(key.finish()),
            n => {
                key.0.update(&buffer[..n]);
            }
        }
    }
}

/// Why code in `dir` cannot be trusted, if it cannot.
fn untrusted(dir: &Path) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir).ok()?.permissions().mode();
        if mode & 0o002 != 0 {
            return Some("every user may write to it");
        }
    }
    let _ = dir;
    None
}

/// The cache key of `bytes`.
fn key(engine: &Engine, bytes: &[u8]) -> String {
    let mut key = Key::new(engine);
    key.0.update(bytes);
    key.finish()
}

/// A cache key being computed: a BLAKE3 digest of everything about the engine that
/// compiled code depends on (wasmtime's version, target and settings, as
/// wasmtime itself defines them), then of the plugin's bytes.
struct Key(blake3::Hasher);

impl Key {
    fn new(engine: &Engine) -> Self {
        /// Feeds what a `Hash` impl writes into the digest.
        struct Feed<'a>(&'a mut blake3::Hasher);
        impl Hasher for Feed<'_> {
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
            fn finish(&self) -> u64 {
                unreachable!("only the digest is used")
            }
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(CACHE_FORMAT.as_bytes());
        hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
        engine
            .precompile_compatibility_hash()
            .hash(&mut Feed(&mut hasher));
        Self(hasher)
    }

    fn finish(self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a
/// reader never sees a half-written artifact.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| fs::rename(&temporary, path));
    if renamed.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    renamed
}

/// What a plugin file holds, judged by its first bytes.
pub(crate) enum Kind {
    /// A WebAssembly component, to be compiled.
    Wasm,
    /// An ELF image: presumably a precompiled artifact.
    Precompiled,
}

/// Tells a WebAssembly component from a precompiled artifact by the file's
/// first bytes (without reading the rest, which may be tens of megabytes).
pub(crate) fn kind(plugin: &Path) -> anyhow::Result<Kind> {
    use std::io::Read;
    let cannot_read = || format!("cannot read {}", plugin.display());
    let mut header = Vec::with_capacity(8);
    fs::File::open(plugin)
        .and_then(|f| f.take(8).read_to_end(&mut header))
        .with_context(cannot_read)?;
    if header.starts_with(ELF_MAGIC) {
        return Ok(Kind::Precompiled);
    }
    if header.len() < 8 || !header.starts_with(WASM_MAGIC) {
        bail!("{} is not a WebAssembly file", plugin.display());
    }
    if header[4..8] == [1, 0, 0, 0] {
        bail!(
            "{} is a core WebAssembly module, not a component; build it for wasm32-wasip2 \
             or wrap it with `wasm-tools component new`",
            plugin.display()
        );
    }
    Ok(Kind::Wasm)
}

/// Reads a whole plugin file.
pub(crate) fn read(plugin: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(plugin).with_context(|| format!("cannot read {}", plugin.display()))
}

/// Compiles a component, with a one-line reason when it is not valid.
pub(crate) fn compile(engine: &Engine, plugin: &Path, bytes: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, bytes).map_err(|e| {
        anyhow!(
            "{} is not a valid component: {}",
            plugin.display(),
            e.root_cause()
        )
    })
}

/// Loads a precompiled component the user vouched for with
/// `--allow-precompiled`, refusing anything this engine did not make.
pub(crate) fn load_precompiled(
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
        Ok(None) | Err(_) => {
            bail!("{shown} is not a precompiled component made by `locket-host compile`")
        }
    }
    // SAFETY: the user passed --allow-precompiled, declaring the file trusted,
    // as `wasmtime run --allow-precompiled` does; wasmtime refuses an
    // artifact made by another version or with other settings.
    unsafe { Component::deserialize_file(engine, plugin) }.map_err(|e| {
        anyhow!(
            "{shown} cannot be loaded: it was compiled by a different build of locket-host or \
             with different options ({}); recompile it with `{recompile_hint}`",
            e.root_cause()
        )
    })
}
