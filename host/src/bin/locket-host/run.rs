//! `locket-host run`: one plugin, in this process, with its grants and
//! limits, ending with its exit code.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use locket_etcd::{Connect, Session};
use locket_host::{Access, DeadlineExceeded, Grants, LocketCtx, PluginState};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx};

use crate::cli::{Compiler, EXIT_TIMEOUT, EXIT_TRAP, RunArgs};
use crate::load::{self, Load, Loaded};
use crate::signals::exit_on_termination_signals;

/// Runs the plugin. An `Err` is a failure before it started; the plugin's own
/// outcome is the exit code.
pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    raise_fd_limit();
    exit_on_termination_signals();
    let (plugin, guest_args) = args
        .plugin_and_args
        .split_first()
        .context("no plugin given")?;
    let plugin = Path::new(plugin);
    let guest_args: Vec<&str> = guest_args
        .iter()
        .map(|a| {
            a.to_str()
                .ok_or_else(|| anyhow!("plugin argument {a:?} is not valid UTF-8"))
        })
        .collect::<anyhow::Result<_>>()?;
    if args.fuel.is_some() && args.compiler == Compiler::Winch {
        bail!(
            "--fuel needs Cranelift's code, which meters fuel; Winch's does not (drop --compiler winch)"
        );
    }
    let started = Instant::now();
    let how = Load {
        allow_precompiled: args.allow_precompiled,
        cache: !args.no_cache,
        fuel: args.fuel.is_some(),
        compiler: args.compiler,
    };
    let Loaded {
        engine,
        component,
        code,
    } = load::load(plugin, &how)?;
    tracing::debug!(
        load_us = started.elapsed().as_micros(),
        %code,
        "plugin loaded"
    );
    let command = link(&engine, &component, plugin)?;
    let (mut store, sessions) = store(&engine, &args, plugin, &guest_args)?;
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
    // Release every lock the plugin still held, now: closing the handles'
    // files does it, and revoking the etcd lease deletes every key on it.
    // The rest (the instance's memory, the compiled code) is left to the
    // process exit, which frees it faster than unmapping it piece by piece
    // would.
    store.data_mut().table = ResourceTable::new();
    for (_, session) in &sessions {
        session.close();
    }
    if args.stats {
        let s = store.data().locket.stats();
        eprintln!(
            "locket-host: stats: {} handles, {} acquired, {} timed out, {} failed, {} released, \
             {} lost; waited {:.3?} in all, {:.3?} at most",
            s.handles,
            s.acquired,
            s.timeouts,
            s.errors,
            s.releases,
            s.lost,
            s.total_wait,
            s.max_wait
        );
        eprintln!("locket-host: stats: code: {code}");
    }
    let lost = store.data().locket.stats().lost;
    if lost > 0 {
        eprintln!(
            "locket-host: warning: {lost} etcd lock(s) the plugin held were lost with this \
             host's lease (cut off from the cluster or paused past --lease-ttl); \
             only a fencing-token check keeps a stale holder's writes out"
        );
    }
    std::mem::forget(store);
    std::mem::forget(command);
    std::mem::forget(component);
    Ok(exit_code(outcome, &args))
}

/// Links WASI and `locket` for `component`, which must be a command.
fn link(
    engine: &Engine,
    component: &Component,
    plugin: &Path,
) -> anyhow::Result<CommandPre<PluginState>> {
    let mut linker = Linker::<PluginState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    locket_host::add_to_linker(&mut linker)?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} cannot run here", plugin.display()))?;
    CommandPre::new(pre)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "{} is not a command component (it does not export wasi:cli/run)",
                plugin.display()
            )
        })
}

/// The etcd sessions of a run, each with its cluster's address.
type Sessions = Vec<(String, Session)>;

/// One session per etcd cluster that `--locks` names, each with its lease,
/// keyed by the cluster's address. Each namespace is checked for access, so
/// that an unreachable cluster or refused credentials end the run before
/// the plugin starts.
fn connect(args: &RunArgs) -> anyhow::Result<Sessions> {
    if args.locks.is_empty() {
        if args.lease_ttl.is_some() {
            bail!("--lease-ttl is for etcd lock namespaces; it needs --locks");
        }
        return Ok(Vec::new());
    }
    let mut clusters: Vec<(String, Connect)> = Vec::new();
    for l in &args.locks {
        let key = l.address.cluster.to_string();
        let connect = match clusters.iter().position(|(k, _)| *k == key) {
            Some(at) => clusters.remove(at).1,
            None => {
                let connect = Connect::new(l.address.cluster.clone()).from_env()?;
                match args.lease_ttl {
                    Some(ttl) => connect.lease_ttl(ttl),
                    None => connect,
                }
            }
        };
        clusters.push((key, connect.check_access(l.address.name.clone())));
    }
    clusters
        .into_iter()
        .map(|(key, connect)| {
            let session = connect
                .session()
                .with_context(|| format!("cannot use the etcd cluster {key} for --locks"))?;
            Ok((key, session))
        })
        .collect()
}

/// The plugin's store: its grants, WASI context, locks and limits, and the
/// timer of `--timeout`.
fn store(
    engine: &Engine,
    args: &RunArgs,
    plugin: &Path,
    guest_args: &[&str],
) -> anyhow::Result<(Store<PluginState>, Sessions)> {
    let mut grants = Grants::new();
    for (list, access) in [
        (&args.dirs, Access::ReadWrite),
        (&args.dirs_ro, Access::ReadOnly),
    ] {
        for d in list {
            grants.grant(&d.host, &d.guest, access)?;
        }
    }
    // Bad grants are refused before any cluster is asked.
    for l in &args.locks {
        grants.check_lock_grant(&l.address.name, &l.guest)?;
    }
    let sessions = connect(args)?;
    crate::signals::holds_etcd_locks(!sessions.is_empty());
    for l in &args.locks {
        let key = l.address.cluster.to_string();
        let (_, session) = sessions
            .iter()
            .find(|(k, _)| *k == key)
            .context("a --locks cluster without a session")?;
        grants.grant_locks(session, &l.address.name, &l.guest)?;
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
    let locket = LocketCtx::new(Arc::new(grants))
        .with_max_locks(args.max_locks)
        .with_deadline(deadline);
    let mut limits = StoreLimitsBuilder::new();
    if let Some(bytes) = args.max_memory {
        limits = limits
            .memory_size(bytes)
            .table_elements(1_000_000)
            .trap_on_grow_failure(true);
    }
    let state = PluginState::new(wasi.build(), locket).with_limits(limits.build());
    let mut store = Store::new(engine, state);
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
    Ok((store, sessions))
}

/// The exit code for how the plugin ended, with a message for each way it
/// can fail.
fn exit_code(outcome: wasmtime::Result<Result<(), ()>>, args: &RunArgs) -> ExitCode {
    let e = match outcome {
        Ok(Ok(())) => return ExitCode::SUCCESS,
        Ok(Err(())) => return ExitCode::FAILURE,
        Err(e) => e,
    };
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

/// Interrupts the plugin at the deadline; if it is stuck outside wasm (in a
/// blocking WASI call), ends the process shortly after, which the kernel
/// follows by releasing every file lock. Etcd locks then wait for their
/// lease to expire: the plugin may be stuck in the middle of a write, so the
/// lease is not revoked under it.
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
