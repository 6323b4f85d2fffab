//! The command line: subcommands, flags with their `--help` text, small
//! value parsers in the style of `wasmtime run`, and the exit codes.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use locket_host::DEFAULT_MAX_LOCKS;

/// Exit code for load, usage and validation errors.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code when `--timeout` expires, as timeout(1) uses.
pub(crate) const EXIT_TIMEOUT: u8 = 124;
/// Exit code when the guest traps, as for an abort.
pub(crate) const EXIT_TRAP: u8 = 134;

/// Run WebAssembly plugins that take real file locks, shared with native
/// processes (Python's locket and filelock, flock(1), Rust's locket).
#[derive(Parser)]
#[command(name = "locket-host", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a plugin component (world `locket:lock/plugin`).
    ///
    /// Example: locket-host run --dir ./shared::/data counter.wasm /data/counter 100
    Run(RunArgs),
    /// Compile a plugin ahead of time into a precompiled artifact, which
    /// `run --allow-precompiled` loads without compiling.
    ///
    /// The artifact is native code for this machine, this build of
    /// locket-host and these options; `run` refuses one made otherwise.
    /// Example: locket-host compile plugin.wasm -o plugin.cwasm
    Compile(CompileArgs),
    /// Compiles a plugin with Cranelift into the cache, at low priority: what
    /// `run` starts in the background after a first run on Winch. Not for
    /// direct use.
    #[command(hide = true)]
    FillCache(FillCacheArgs),
}

#[derive(Args)]
pub(crate) struct FillCacheArgs {
    /// Compile for `run --fuel`.
    #[arg(long)]
    pub(crate) fuel: bool,

    /// The plugin component.
    pub(crate) plugin: PathBuf,
}

/// `run --compiler`: how a plugin that is not in the cache is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Compiler {
    /// Winch now, for a fast start, and Cranelift into the cache in the
    /// background, for the runs after; Cranelift now where Winch cannot serve
    /// (with --fuel or --no-cache, or a plugin Winch cannot compile).
    Auto,
    /// Cranelift now, and into the cache: optimised code from the first run.
    Cranelift,
    /// Winch, every run: the fastest compile, the slowest code (not with --fuel).
    Winch,
}

#[derive(Args)]
pub(crate) struct CompileArgs {
    /// Where to write the artifact.
    #[arg(short, long, value_name = "OUT.cwasm")]
    pub(crate) output: PathBuf,

    /// Compile for `run --fuel` (fuel metering is compiled into the code).
    #[arg(long)]
    pub(crate) fuel: bool,

    /// The plugin component.
    #[arg(value_name = "PLUGIN.wasm")]
    pub(crate) plugin: PathBuf,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Grant a host directory to the plugin, read-write, under the guest path
    /// GUEST (by default the host path as written). Repeatable.
    /// Example: --dir ./shared::/data
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    pub(crate) dirs: Vec<DirArg>,

    /// Grant a host directory read-only: the plugin may lock files that exist
    /// there but not create any. Example: --dir-ro /etc/app::/config
    #[arg(long = "dir-ro", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    pub(crate) dirs_ro: Vec<DirArg>,

    /// Grant an etcd lock namespace to the plugin under the guest path GUEST,
    /// as a directory is granted: the plugin's lock-file("GUEST/a.lock")
    /// names the etcd lock NAMESPACE/a.lock, which every host of the cluster
    /// shares, and no file is made. The longest prefix wins among --dir and
    /// --locks grants. etcd+https:// for TLS; the CA, client certificate and
    /// credentials come from LOCKET_ETCD_CA, LOCKET_ETCD_CERT,
    /// LOCKET_ETCD_KEY, LOCKET_ETCD_USER and LOCKET_ETCD_PASSWORD (or
    /// LOCKET_ETCD_PASSWORD_FILE), never from the command line. A cluster
    /// that cannot be reached or refuses the credentials is an error before
    /// the plugin starts. Repeatable.
    /// Example: --locks etcd://10.0.0.1:2379,10.0.0.2:2379/jobs::/cluster
    #[arg(
        long = "locks",
        value_name = "etcd://HOST:PORT[,...]/NAMESPACE::GUEST",
        value_parser = parse_locks
    )]
    pub(crate) locks: Vec<LocksArg>,

    /// The time to live of this process's etcd lease, for --locks: if this
    /// process dies or stops answering, the cluster frees its locks after
    /// this long (10s by default). Example: --lease-ttl 5s
    #[arg(long, value_name = "DURATION", value_parser = locket_cmdline::parse_duration)]
    pub(crate) lease_ttl: Option<Duration>,

    /// Set an environment variable for the plugin; a bare NAME passes the
    /// host's value through. Example: --env RUST_LOG=debug --env HOME
    #[arg(long = "env", value_name = "NAME[=VAL]", value_parser = parse_env)]
    pub(crate) envs: Vec<(String, Option<String>)>,

    /// Stop the plugin after this long, exiting with code 124 and releasing its
    /// locks, even while it waits for a lock. A bare number is seconds.
    /// Example: --timeout 500ms, --timeout 2s, --timeout 1m
    #[arg(long, value_name = "DURATION", value_parser = locket_cmdline::parse_duration)]
    pub(crate) timeout: Option<Duration>,

    /// The most lock handles the plugin may have at once; more fail with
    /// `limit`. Example: --max-locks 64
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LOCKS)]
    pub(crate) max_locks: usize,

    /// Cap the plugin's linear memory (each memory) at this many bytes, and
    /// its tables at a million elements; a plugin that grows past the cap is
    /// stopped and its locks released. Example: --max-memory 64M
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_memory: Option<usize>,

    /// Let the plugin run at most this many units of fuel (roughly,
    /// WebAssembly instructions); a plugin that uses it up is stopped and its
    /// locks released. Example: --fuel 1000000000
    #[arg(long, value_name = "N")]
    pub(crate) fuel: Option<u64>,

    /// Print a summary of the plugin's locking to stderr when it ends:
    /// handles, acquires, timeouts, errors, releases and time spent waiting.
    /// Example: --stats
    #[arg(long)]
    pub(crate) stats: bool,

    /// Run a precompiled artifact made by `locket-host compile`. It is
    /// native code that is trusted, not checked, so only pass this for
    /// files you made yourself or trust as you would a program, and do not
    /// change the file while it runs.
    #[arg(long)]
    pub(crate) allow_precompiled: bool,

    /// Compile the plugin afresh instead of using the cache of precompiled
    /// plugins (in $LOCKET_CACHE_DIR, else $XDG_CACHE_HOME/locket-host, else
    /// ~/.cache/locket-host).
    #[arg(long)]
    pub(crate) no_cache: bool,

    /// How to compile a plugin that is not in the cache. `auto` runs its
    /// first run on Winch, wasmtime's baseline compiler, which compiles a
    /// large plugin several times faster than Cranelift, while Cranelift
    /// compiles optimised code into the cache in the background (a
    /// low-priority `locket-host` process) for the runs after. `--stats` says
    /// which code ran. Example: --compiler cranelift
    #[arg(long, value_enum, default_value_t = Compiler::Auto)]
    pub(crate) compiler: Compiler,

    /// The plugin component, then its arguments, passed verbatim (even
    /// `--help`). Example: plugin.wasm --verbose input.txt
    #[arg(
        value_name = "PLUGIN.wasm [ARGS]",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) plugin_and_args: Vec<OsString>,
}

/// A `--dir HOST[::GUEST]` value.
#[derive(Debug, Clone)]
pub(crate) struct DirArg {
    pub(crate) host: PathBuf,
    pub(crate) guest: String,
}

/// Parses `HOST[::GUEST]`; without `::GUEST` the guest sees the directory
/// under the host path as written. The host directory must exist.
fn parse_dir(s: &str) -> Result<DirArg, String> {
    let (host, guest) = match s.split_once("::") {
        Some((host, guest)) => (host, guest),
        None => (s, s),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!("expected HOST[::GUEST], got {s:?}"));
    }
    match std::fs::metadata(host) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("{host} is not a directory")),
        Err(e) => return Err(format!("{host}: {e}")),
    }
    Ok(DirArg {
        host: PathBuf::from(host),
        guest: guest.to_owned(),
    })
}

/// A `--locks etcd://.../NAMESPACE::GUEST` value.
#[derive(Debug, Clone)]
pub(crate) struct LocksArg {
    pub(crate) address: locket_etcd::Address,
    pub(crate) guest: String,
}

/// Parses `etcd://HOST:PORT[,...]/NAMESPACE::GUEST`. The last `::` splits,
/// since an IPv6 endpoint (`[::1]:2379`) has its own.
fn parse_locks(s: &str) -> Result<LocksArg, String> {
    let usage = || format!("expected etcd://HOST:PORT[,HOST:PORT...]/NAMESPACE::GUEST, got {s:?}");
    if !locket_etcd::Address::is_etcd(s) {
        return Err(usage());
    }
    let (address, guest) = s.rsplit_once("::").ok_or_else(usage)?;
    if guest.is_empty() || guest.contains(']') {
        return Err(usage());
    }
    let address = locket_etcd::Address::parse(address).map_err(|e| e.to_string())?;
    Ok(LocksArg {
        address,
        guest: guest.to_owned(),
    })
}

/// Parses `NAME[=VAL]`; a bare NAME passes the host's value through.
fn parse_env(s: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match s.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (s, None),
    };
    if name.is_empty() {
        return Err(format!("expected NAME[=VAL], got {s:?}"));
    }
    Ok((name.to_owned(), value))
}

/// Parses a size in bytes: a whole number with an optional unit (`K`, `M`,
/// `G`, with or without `iB`/`B`, all powers of 1024), like `64M` or `1GiB`.
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: usize = number.parse().map_err(|_| {
        format!("invalid size {s:?}: expected a number of bytes like 65536, 64M or 1G")
    })?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {other:?} (use K, M or G)"
            ));
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_take_an_optional_guest_path_and_must_exist() {
        let d = parse_dir("/tmp::/data").unwrap();
        assert_eq!(
            (d.host, d.guest),
            (PathBuf::from("/tmp"), "/data".to_owned())
        );
        let d = parse_dir("/tmp").unwrap();
        assert_eq!(d.guest, "/tmp");
        assert!(
            parse_dir("/no/such/dir")
                .unwrap_err()
                .contains("No such file")
        );
        assert!(
            parse_dir("/etc/hostname")
                .unwrap_err()
                .contains("not a directory")
        );
        assert!(parse_dir("::/x").is_err());
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("16k"), Ok(16 << 10));
        for bad in ["", "M", "-1", "1.5M", "3 parsecs", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn locks_take_an_etcd_address_and_a_guest_path() {
        let l = parse_locks("etcd://127.0.0.1:2379,h2/jobs/a::/cluster").unwrap();
        assert_eq!(l.guest, "/cluster");
        assert_eq!(l.address.name, "jobs/a");
        assert_eq!(l.address.cluster.endpoints(), ["127.0.0.1:2379", "h2:2379"]);
        let v6 = parse_locks("etcd://[::1]:2379/ns::/c").unwrap();
        assert_eq!(v6.address.cluster.endpoints(), ["[::1]:2379"]);
        assert_eq!(v6.guest, "/c");
        for bad in [
            "etcd://h/ns",
            "etcd://h/ns::",
            "/tmp::/c",
            "etcd://[::1]:2379/ns",
            "etcd://h/../x::/c",
            "etcd://h:99999/ns::/c",
        ] {
            assert!(parse_locks(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn env_takes_an_optional_value() {
        assert_eq!(parse_env("A=1"), Ok(("A".into(), Some("1".into()))));
        assert_eq!(parse_env("A="), Ok(("A".into(), Some(String::new()))));
        assert_eq!(parse_env("A"), Ok(("A".into(), None)));
        assert!(parse_env("=1").is_err());
    }
}
