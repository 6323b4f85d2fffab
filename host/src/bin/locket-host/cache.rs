//! The cache of compiled plugins that `run` keeps, and how its entries and
//! the `.cwasm` files of `locket-host compile` are written.
//!
//! Both are wasmtime's serialized form: native code in an ELF image that
//! `Component::deserialize_file` maps into memory, copy-on-write, so a large
//! plugin starts in milliseconds instead of seconds. Loading one runs its
//! native code, so it must come from a place we trust: our own cache
//! directory (owned by us and writable by nobody else), or a file the user
//! names together with `--allow-precompiled`. A mapped artifact must also not
//! change while it is loaded, which is why entries are only ever written
//! whole, under a fresh name, and renamed into place.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::engine::{Backend, compile_component, engine};
use crate::plugin_file::Plugin;

/// Bumped when the cache's naming or contents change meaning.
const CACHE_FORMAT: &str = "locket-host precompiled cache 1";

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
        let mut create = fs::DirBuilder::new();
        create.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut create, 0o700);
        if let Err(e) = create.create(&dir) {
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

    /// The cache entry of `plugin` for `engine`. The file is hashed as a
    /// stream: on a hit its bytes are never needed.
    pub(crate) fn entry(&self, engine: &Engine, plugin: &Plugin) -> anyhow::Result<PathBuf> {
        let mut key = Key::new(engine);
        plugin.for_each_chunk(|chunk| {
            key.0.update(chunk);
        })?;
        Ok(self.entry_named(key.finish()))
    }

    /// The cache entry of a plugin whose bytes are `bytes`, for `engine`.
    fn entry_of(&self, engine: &Engine, bytes: &[u8]) -> PathBuf {
        let mut key = Key::new(engine);
        key.0.update(bytes);
        self.entry_named(key.finish())
    }

    fn entry_named(&self, key: String) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The plugin compiled for `engine`, mapped from `entry` if it is there.
    pub(crate) fn lookup(&self, engine: &Engine, entry: &Path) -> Option<Component> {
        if !trusted_entry(entry) {
            return None;
        }
        // SAFETY: wasmtime requires the artifact to be one it made, and to
        // stay unchanged while loaded. The entry is a regular file of ours
        // in a directory only we may write to (see `untrusted`), named by
        // the plugin's content and this engine's settings (which wasmtime
        // checks again), and entries are only replaced whole, by rename, so
        // a mapped one never changes under us.
        match unsafe { Component::deserialize_file(engine, entry) } {
            Ok(component) => {
                tracing::debug!(?entry, "loaded the plugin from the cache");
                Some(component)
            }
            Err(e) => {
                tracing::debug!(?entry, error = %e, "unusable cache entry; recompiling");
                None
            }
        }
    }

    /// Compiles `bytes`, the plugin read from `plugin`, with `engine` and
    /// stores it for the next runs, under the entry of the bytes compiled
    /// (in case the file changed since it was hashed).
    pub(crate) fn compile_and_store(
        &self,
        engine: &Engine,
        plugin: &Path,
        bytes: &[u8],
    ) -> anyhow::Result<Component> {
        let component = compile_component(engine, plugin, bytes)?;
        let entry = self.entry_of(engine, bytes);
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

    /// Starts `locket-host fill-cache` for `plugin`: a process of its own,
    /// at low priority and in a process group of its own (so that the
    /// terminal's Ctrl-C for this run does not cut it short), which outlives
    /// this one if it must. Returns its process id.
    pub(crate) fn start_filling(&self, plugin: &Path, fuel: bool) -> std::io::Result<u32> {
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command.arg("fill-cache");
        if fuel {
            command.arg("--fuel");
        }
        command
            .arg(std::path::absolute(plugin)?)
            .env("LOCKET_CACHE_DIR", &self.dir)
            .env_remove("RUST_LOG")
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn()?;
        let pid = child.id();
        // Reaped when it ends, so that a long run leaves no zombie behind.
        std::thread::spawn(move || child.wait());
        Ok(pid)
    }
}

/// `locket-host fill-cache`: compiles `plugin` with Cranelift into the cache,
/// unless it is there already or another process is compiling it now.
///
/// # Errors
///
/// If there is no usable cache, or the plugin cannot be read or compiled.
pub(crate) fn fill_cache(plugin: &Path, fuel: bool) -> anyhow::Result<()> {
    lower_priority();
    let cache = Cache::open().context("no usable compilation cache")?;
    let engine = engine(fuel, Backend::Cranelift)?;
    let bytes = Plugin::open(plugin)?.bytes()?;
    let entry = cache.entry_of(&engine, &bytes);
    // One compile per plugin at a time: a second would only repeat the work.
    let busy = locket::lock_file(entry.with_extension("filling"));
    match busy.acquire_with(locket::Mode::Exclusive, Some(std::time::Duration::ZERO)) {
        Ok(()) => {}
        Err(locket::LockError::Timeout { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if trusted_entry(&entry) {
        return Ok(());
    }
    cache.compile_and_store(&engine, plugin, &bytes).map(drop)
}

/// Lowers this process's scheduling priority to the least, so that a
/// background compile yields the CPU to the plugin that is running.
fn lower_priority() {
    #[cfg(unix)]
    // SAFETY: setpriority takes plain integers; failing leaves the priority
    // as it was, which is harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

/// Whether `entry` is there and is a regular file we own (not a symlink).
fn trusted_entry(entry: &Path) -> bool {
    let Ok(meta) = fs::symlink_metadata(entry) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != effective_uid() {
            return false;
        }
    }
    meta.file_type().is_file()
}

#[cfg(unix)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Why code in `dir` cannot be trusted, if it cannot: unless we own it and
/// nobody else may write to it, someone else could plant native code in it.
fn untrusted(dir: &Path) -> Option<String> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) => return Some(format!("cannot check it: {e}")),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != effective_uid() {
            return Some("another user owns it".to_owned());
        }
        if meta.mode() & 0o022 != 0 {
            return Some("other users may write to it".to_owned());
        }
    }
    let _ = meta;
    None
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

/// Writes `bytes` to `path` through a new temporary file (a random name,
/// created exclusively) and a rename, so that a reader never sees, or maps, a
/// half-written artifact.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".locket-host-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
