//! Compiled plugins: the cache of precompiled artifacts that `run` keeps, and
//! the `.cwasm` files that `locket-host compile` writes.
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

use anyhow::{Context, anyhow, bail};
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

use crate::cli::Compiler;
use crate::engine::{Backend, engine};

/// Bumped when the cache's naming or contents change meaning.
const CACHE_FORMAT: &str = "locket-host precompiled cache 1";

/// The start of an ELF file, which is what wasmtime's precompiled artifacts are.
const ELF_MAGIC: &[u8] = b"\x7fELF";
/// The start of a WebAssembly binary, module or component.
const WASM_MAGIC: &[u8] = b"\0asm";

/// The directory of precompiled artifacts, keyed by plugin content and engine.
struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache in `$LOCKET_CACHE_DIR`, else `$XDG_CACHE_HOME/locket-host`,
    /// else `~/.cache/locket-host`; `None` (with a note in the log) when
    /// there is no such place or it is not safe to load code from.
    fn open() -> Option<Self> {
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
    fn entry(&self, engine: &Engine, plugin: &Plugin) -> anyhow::Result<PathBuf> {
        Ok(self.entry_named(plugin.hash(engine)?))
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
    fn lookup(&self, engine: &Engine, entry: &Path) -> Option<Component> {
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
    fn compile_and_store(
        &self,
        engine: &Engine,
        plugin: &Path,
        bytes: &[u8],
    ) -> anyhow::Result<Component> {
        let component = compile(engine, plugin, bytes)?;
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
    fn start_filling(&self, plugin: &Path, fuel: bool) -> std::io::Result<u32> {
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

/// What a plugin file holds, judged by its first bytes.
pub(crate) enum Kind {
    /// A WebAssembly component, to be compiled.
    Wasm,
    /// An ELF image: presumably a precompiled artifact.
    Precompiled,
}

/// A plugin file, opened once: its kind is known from its first bytes, and
/// the rest is read only if needed.
pub(crate) struct Plugin {
    pub(crate) path: PathBuf,
    pub(crate) kind: Kind,
    file: fs::File,
}

impl Plugin {
    /// Opens the plugin and tells a WebAssembly component from a precompiled
    /// artifact by its first bytes (without reading the rest, which may be
    /// tens of megabytes). Only regular files are accepted: a FIFO or a
    /// device could block, or be read only once.
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display();
        let mut options = fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
        let file = options
            .open(path)
            .with_context(|| format!("cannot read {shown}"))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {shown}"))?;
        if meta.is_dir() {
            bail!("{shown} is a directory, not a plugin file");
        }
        if !meta.is_file() {
            bail!("{shown} is not a regular file; pass a plugin file, not a pipe or device");
        }
        let mut header = [0; 8];
        let got = read_at(&file, &mut header, 0).with_context(|| format!("cannot read {shown}"))?;
        let header = &header[..got];
        let kind = if header.starts_with(ELF_MAGIC) {
            Kind::Precompiled
        } else if header.len() < 8 || !header.starts_with(WASM_MAGIC) {
            bail!("{shown} is not a WebAssembly file");
        } else if header[4..8] == [1, 0, 0, 0] {
            bail!(
                "{shown} is a core WebAssembly module, not a component; build it for \
                 wasm32-wasip2 or wrap it with `wasm-tools component new`"
            );
        } else {
            Kind::Wasm
        };
        Ok(Self {
            path: path.to_path_buf(),
            kind,
            file,
        })
    }

    /// The whole file.
    pub(crate) fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.for_each_chunk(|chunk| bytes.extend_from_slice(chunk))?;
        Ok(bytes)
    }

    /// The cache key of the file's content for `engine`, hashed as it is read.
    fn hash(&self, engine: &Engine) -> anyhow::Result<String> {
        let mut key = Key::new(engine);
        self.for_each_chunk(|chunk| {
            key.0.update(chunk);
        })?;
        Ok(key.finish())
    }

    /// Reads the file from the start, a chunk at a time.
    fn for_each_chunk(&self, mut f: impl FnMut(&[u8])) -> anyhow::Result<()> {
        let mut chunk = vec![0; 256 * 1024];
        let mut offset = 0;
        loop {
            let n = read_at(&self.file, &mut chunk, offset)
                .with_context(|| format!("cannot read {}", self.path.display()))?;
            if n == 0 {
                return Ok(());
            }
            f(&chunk[..n]);
            offset += n as u64;
        }
    }
}

/// Reads at `offset`, retrying interruptions.
fn read_at(file: &fs::File, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
    loop {
        #[cfg(unix)]
        let result = std::os::unix::fs::FileExt::read_at(file, buffer, offset);
        #[cfg(windows)]
        let result = std::os::windows::fs::FileExt::seek_read(file, buffer, offset);
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

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
        let component = compile(&winch, plugin, &file.bytes()?)?;
        return Ok(loaded(winch, component, Code::Winch { filling: false }));
    }
    let cranelift = cranelift()?;
    let Some(cache) = how.cache.then(Cache::open).flatten() else {
        let component = compile(&cranelift, plugin, &file.bytes()?)?;
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
        match compile(&winch, plugin, &bytes) {
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
