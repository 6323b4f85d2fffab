//! A plugin file as `run` and `compile` are given it: opened once, told a
//! WebAssembly component from a precompiled artifact (or from what is
//! neither) by its first bytes, and read only when needed.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The start of an ELF file, which is what wasmtime's precompiled artifacts are.
const ELF_MAGIC: &[u8] = b"\x7fELF";
/// The start of a WebAssembly binary, module or component.
const WASM_MAGIC: &[u8] = b"\0asm";

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

    /// Reads the file from the start, a chunk at a time.
    pub(crate) fn for_each_chunk(&self, mut f: impl FnMut(&[u8])) -> anyhow::Result<()> {
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
