//! `locket-host`: runs WebAssembly plugin components that lock files beside
//! native processes.

mod artifacts;
mod cli;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::{Args, Parser, Subcommand};
use locket_host::{
    Access, DEFAULT_MAX_LOCKS, DeadlineExceeded, Grants, LocketCtx, LocketCtxView, LocketView,
};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::cli::DirArg;

/// Exit code for load, usage and validation errors.
const EXIT_USAGE: u8 = 2;
/// Exit code when `--timeout` expires, as timeout(1) uses.
const EXIT_TIMEOUT: u8 = 124;
/// Exit code when the guest traps, as for an abort.
const EXIT_TRAP: u8 = 134;

/// Run WebAssembly plugins that take real file locks, shared with native
/// processes (Python's locket and filelock, flock(1), Rust's locket).
#[derive(Parser)]
#[command(name = "locket-host", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

#[derive(Args)]
struct CompileArgs {
    /// Where to write the artifact.
    #[arg(short, long, value_name = "OUT.cwasm")]
    output: PathBuf,

    /// Compile for `run --fuel` (fuel metering is compiled into the code).
    #[arg(long)]
    fuel: bool,

    /// The plugin component.
    #[arg(value_name = "PLUGIN.wasm")]
    plugin: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// Grant a host directory to the plugin, read-write, under the guest path
    /// GUEST (by default the host path as written). Repeatable.
    /// Example: --dir ./shared::/data
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = cli::parse_dir)]
    dirs: Vec<DirArg>,

    /// Grant a host directory read-only: the plugin may lock files that exist
    /// there but not create any. Example: --dir-ro /etc/app::/config
    #[arg(long = "dir-ro", value_name = "HOST[::GUEST]", value_parser = cli::parse_dir)]
    dirs_ro: Vec<DirArg>,

    /// Set an environment variable for the plugin; a bare NAME passes the
    /// host's value through. Example: --env RUST_LOG=debug --env HOME
    #[arg(long = "env", value_name = "NAME[=VAL]", value_parser = cli::parse_env)]
    envs: Vec<(String, Option<String>)>,

    /// Stop the plugin after this long, exiting with code 124 and releasing its
    /// locks, even while it waits for a lock. A bare number is seconds.
    /// Example: --timeout 500ms, --timeout 2s, --timeout 1m
    #[arg(long, value_name = "DURATION", value_parser = cli::parse_duration)]
    timeout: Option<Duration>,

    /// The most lock handles the plugin may have at once; more fail with
    /// `limit`. Example: --max-locks 64
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LOCKS)]
    max_locks: usize,

    /// Cap the plugin's linear memory (each memory) at this many bytes, and
    /// its tables at a million elements; a plugin that grows past the cap is
    /// stopped and its locks released. Example: --max-memory 64M
    #[arg(long, value_name = "SIZE", value_parser = cli::parse_size)]
    max_memory: Option<usize>,

    /// Let the plugin run at most this many units of fuel (roughly,
    /// WebAssembly instructions); a plugin that uses it up is stopped and its
    /// locks released. Example: --fuel 1000000000
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,

    /// Print a summary of the plugin's locking to stderr when it ends:
    /// handles, acquires, timeouts, errors, releases and time spent waiting.
    /// Example: --stats
    #[arg(long)]
    stats: bool,

    /// Run a precompiled artifact made by `locket-host compile`. It is
    /// native code that is trusted, not checked, so only pass this for
    /// files you made yourself or trust as you would a program, and do not
    /// change the file while it runs.
    #[arg(long)]
    allow_precompiled: bool,

    /// Compile the plugin afresh instead of using the cache of precompiled
    /// plugins (in $LOCKET_CACHE_DIR, else $XDG_CACHE_HOME/locket-host, else
    /// ~/.cache/locket-host).
    #[arg(long)]
    no_cache: bool,

    /// The plugin component, then its arguments, passed verbatim (even
    /// `--help`). Example: plugin.wasm --verbose input.txt
    #[arg(
        value_name = "PLUGIN.wasm [ARGS]",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    plugin_and_args: Vec<OsString>,
}

struct State {
    wasi: WasiCtx,
    locket: LocketCtx,
    table: ResourceTable,
    limits: StoreLimits,
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

fn main() -> ExitCode {
    let args = match Cli::parse().command {
        Command::Run(args) => args,
        Command::Compile(args) => {
            init_tracing();
            return match compile(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("locket-host: error: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
    };
    init_tracing();
    raise_fd_limit();
    exit_on_termination_signals();
    match run(args) {
        Ok(code) => code,
        // Errors before the plugin starts: loading, validation, set-up.
        Err(e) => {
            eprintln!("locket-host: error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Runs the plugin. An `Err` is a failure before it started; the plugin's own
/// outcome is the exit code.
fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (plugin, guest_args) = args
        .plugin_and_args
        .split_first()
        .map(|(p, rest)| (PathBuf::from(p), rest))
        .context("no plugin given")?;
    let fuel = args.fuel.is_some();
    let started = Instant::now();
    let engine = engine(fuel)?;
    let component = load(&engine, &plugin, &args, fuel)?;
    tracing::debug!(load_us = started.elapsed().as_micros(), "plugin loaded");

    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    locket_host::add_to_linker(&mut linker)?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} cannot run here", plugin.display()))?;
    let command = CommandPre::new(pre)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "{} is not a command component (it does not export wasi:cli/run)",
                plugin.display()
            )
        })?;

    let mut grants = Grants::new();
    for (list, access) in [
        (&args.dirs, Access::ReadWrite),
        (&args.dirs_ro, Access::ReadOnly),
    ] {
        for d in list {
            grants.grant(&d.host, &d.guest, access)?;
        }
    }
    let mut wasi = WasiCtx::builder();
    wasi.inherit_stdio();
    // One plugin per process, on this thread: filesystem calls may block it
    // directly instead of hopping to a worker thread and back, as in
    // `wasmtime run`. That makes a plugin's file I/O several times faster.
    wasi.allow_blocking_current_thread(true);
    let argv0 = plugin
        .file_name()
        .map_or_else(|| plugin.to_string_lossy(), |n| n.to_string_lossy());
    wasi.arg(argv0);
    for a in guest_args {
        let a = a
            .to_str()
            .ok_or_else(|| anyhow!("plugin argument {a:?} is not valid UTF-8"))?;
        wasi.arg(a);
    }
    for (name, value) in &args.envs {
        match value {
            Some(v) => wasi.env(name, v),
            None => match std::env::var(name) {
                Ok(v) => wasi.env(name, v),
                Err(_) => &mut wasi,
            },
        };
    }
    grants.add_to_wasi(&mut wasi)?;
    let deadline = args.timeout.and_then(|t| Instant::now().checked_add(t));
    let state = State {
        wasi: wasi.build(),
        locket: LocketCtx::new(Arc::new(grants))
            .with_max_locks(args.max_locks)
            .with_deadline(deadline),
        table: ResourceTable::new(),
        limits: {
            let mut limits = StoreLimitsBuilder::new();
            if let Some(bytes) = args.max_memory {
                limits = limits
                    .memory_size(bytes)
                    .table_elements(1_000_000)
                    .trap_on_grow_failure(true);
            }
            limits.build()
        },
    };
    let mut store = Store::new(&engine, state);
    store.limiter(|state| &mut state.limits);
    if let Some(fuel) = args.fuel {
        store.set_fuel(fuel)?;
    }
    // Epoch checks are always compiled in (see `engine`), but the epoch only
    // advances when `--timeout` starts the timer.
    store.set_epoch_deadline(1);
    if let Some(timeout) = args.timeout {
        start_timer(engine.clone(), timeout);
    }

    tracing::debug!(
        ready_us = started.elapsed().as_micros(),
        "linked; instantiating"
    );
    // From here on the plugin runs: its failures have their own exit codes.
    let outcome = command.instantiate(&mut store).and_then(|c| {
        tracing::debug!(
            instantiated_us = started.elapsed().as_micros(),
            "instantiated"
        );
        c.wasi_cli_run().call_run(&mut store)
    });
    tracing::debug!(ended_us = started.elapsed().as_micros(), "plugin ended");
    if args.stats {
        let s = store.data().locket.stats();
        eprintln!(
            "locket-host: stats: {} handles, {} acquired, {} timed out, {} failed, {} released; \
             waited {:.3?} in all, {:.3?} at most",
            s.handles, s.acquired, s.timeouts, s.errors, s.releases, s.total_wait, s.max_wait
        );
    }
    // Release every lock the plugin still held, now: closing the handles'
    // files does it. The rest (the instance's memory, the compiled code) is
    // left to the process exit, which frees it faster than unmapping it
    // piece by piece would.
    store.data_mut().table = ResourceTable::new();
    std::mem::forget(store);
    std::mem::forget(command);
    std::mem::forget(component);
    Ok(match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(())) => ExitCode::FAILURE,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                ExitCode::from(u8::try_from(exit.0).unwrap_or(1))
            } else if e.downcast_ref::<DeadlineExceeded>().is_some()
                || matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt))
            {
                let t = args.timeout.unwrap_or_default();
                eprintln!("locket-host: error: the plugin timed out after {t:?} (--timeout)");
                ExitCode::from(EXIT_TIMEOUT)
            } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)) {
                let fuel = args.fuel.unwrap_or_default();
                eprintln!("locket-host: error: the plugin used up its fuel (--fuel {fuel})");
                ExitCode::from(EXIT_TRAP)
            } else if args.max_memory.is_some()
                && format!("{e:?}").contains("forcing trap when growing memory")
            {
                let cap = args.max_memory.unwrap_or_default();
                eprintln!(
                    "locket-host: error: the plugin tried to grow past its memory limit \
                     (--max-memory {cap} bytes)"
                );
                ExitCode::from(EXIT_TRAP)
            } else {
                eprintln!("locket-host: error: the plugin trapped: {e:?}");
                ExitCode::from(EXIT_TRAP)
            }
        }
    })
}

/// The engine for running (or compiling) plugins. Epoch interruption is
/// always compiled in, so that `--timeout` does not change the code and one
/// artifact serves runs with and without it; fuel metering only with `--fuel`,
/// since it costs time on every block.
fn engine(fuel: bool) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(fuel);
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// Loads the plugin: a precompiled artifact if allowed, else compiled, through
/// the cache unless `--no-cache`.
fn load(engine: &Engine, plugin: &Path, args: &RunArgs, fuel: bool) -> anyhow::Result<Component> {
    let file = artifacts::Plugin::open(plugin)?;
    match file.kind {
        artifacts::Kind::Precompiled if args.allow_precompiled => {
            let hint = format!(
                "locket-host compile{} PLUGIN.wasm -o {}",
                if fuel { " --fuel" } else { "" },
                plugin.display()
            );
            artifacts::load_precompiled(engine, plugin, &hint)
        }
        artifacts::Kind::Precompiled => anyhow::bail!(
            "{} is a precompiled artifact, not a WebAssembly file; running one needs \
             --allow-precompiled, since its native code is trusted, not checked",
            plugin.display()
        ),
        artifacts::Kind::Wasm => {
            let cache = if args.no_cache {
                None
            } else {
                artifacts::Cache::open()
            };
            match cache {
                Some(cache) => cache.load(engine, &file),
                None => artifacts::compile(engine, plugin, &file.bytes()?),
            }
        }
    }
}

/// `locket-host compile`: writes the plugin's precompiled artifact.
fn compile(args: &CompileArgs) -> anyhow::Result<()> {
    let file = artifacts::Plugin::open(&args.plugin)?;
    if let artifacts::Kind::Precompiled = file.kind {
        anyhow::bail!(
            "{} is already a precompiled artifact",
            args.plugin.display()
        );
    }
    let bytes = file.bytes()?;
    let engine = engine(args.fuel)?;
    let component = artifacts::compile(&engine, &args.plugin, &bytes)?;
    let serialized = component.serialize().map_err(anyhow::Error::from)?;
    artifacts::write_atomically(&args.output, &serialized)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(())
}

/// Interrupts the plugin at the deadline; if it is stuck outside wasm (in a
/// blocking WASI call), ends the process shortly after, which the kernel
/// follows by releasing every lock.
fn start_timer(engine: Engine, timeout: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        engine.increment_epoch();
        std::thread::sleep(Duration::from_secs(1));
        eprintln!(
            "locket-host: error: the plugin timed out after {timeout:?} (--timeout) and did \
             not stop within a second (it was blocked outside WebAssembly); ending the process"
        );
        std::process::exit(EXIT_TIMEOUT.into());
    });
}

/// Ends the process at once on SIGINT or SIGTERM, with a message and exit
/// code 128 + the signal number. The kernel then releases every lock the
/// plugin held, even one it was waiting for inside the host.
fn exit_on_termination_signals() {
    extern "C" fn on_signal(signal: libc::c_int) {
        let message: &[u8] = if signal == libc::SIGINT {
            b"locket-host: interrupted (SIGINT); the plugin's locks are released\n"
        } else {
            b"locket-host: terminated (SIGTERM); the plugin's locks are released\n"
        };
        // SAFETY: write(2) and _exit(2) are async-signal-safe; `message` is a
        // static byte string.
        unsafe {
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(128 + signal);
        }
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `action` is zeroed plain data with the fields sigaction reads
        // set, and the handler only makes async-signal-safe calls.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut old);
            if old.sa_sigaction == libc::SIG_IGN {
                continue; // the shell asked us to ignore it (`cmd &`)
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Prints tracing events to stderr when RUST_LOG asks for them (for example
/// `RUST_LOG=locket=debug`), and nothing otherwise.
fn init_tracing() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Raises the soft limit on open files to the hard limit, so that plugins
/// reach `--max-locks` before the process runs out of descriptors.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit read and write a local rlimit struct.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
