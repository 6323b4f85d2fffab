//! Serves many plugin instances at once from one tokio runtime, with the
//! async `locket` host: a guest waiting for a lock does not hold a worker
//! thread, so a few workers can serve many waiting guests.
//!
//! ```text
//! cargo run -p locket-host --example serve -- \
//!     --instances 64 --workers 2 --dir ./shared::/data \
//!     target/wasm-guests/wasm32-wasip2/release/counter.wasm /data/c.lock /data/c 10
//! ```
//!
//! Each instance gets the same arguments and grants. The example prints one
//! line per instance that failed, then a summary. It exits with status 1 if
//! any instance failed, and 2 for bad arguments or a bad plugin.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use locket_host::{Access, Grants, LocketCtx, PluginState};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{I32Exit, WasiCtx};

struct Options {
    instances: usize,
    workers: usize,
    grants: Grants,
    plugin: PathBuf,
    args: Vec<String>,
}

const USAGE: &str =
    "usage: serve [--instances N] [--workers N] [--dir HOST::GUEST]... PLUGIN.wasm [ARGS]...";

fn parse() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let (mut instances, mut workers, mut grants) = (8, 2, Grants::new());
    let plugin = loop {
        let Some(arg) = args.next() else { bail!(USAGE) };
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--instances" => instances = value("--instances")?.parse()?,
            "--workers" => workers = value("--workers")?.parse()?,
            "--dir" => {
                let spec = value("--dir")?;
                let (host, guest) = spec.split_once("::").unwrap_or((&spec, &spec));
                grants.grant(host, guest, Access::ReadWrite)?;
            }
            flag if flag.starts_with('-') => bail!("unknown option {flag}\n{USAGE}"),
            _ => break PathBuf::from(arg),
        }
    };
    if instances == 0 || workers == 0 {
        bail!("--instances and --workers must be at least 1");
    }
    Ok(Options {
        instances,
        workers,
        grants,
        plugin,
        args: args.collect(),
    })
}

/// What one instance did.
struct Outcome {
    exit: Result<i32, String>,
    acquired: u64,
    max_wait: Duration,
}

async fn run_one(
    engine: &Engine,
    linker: &Linker<PluginState>,
    component: &Component,
    grants: &Arc<Grants>,
    argv: &[String],
) -> anyhow::Result<Outcome> {
    let mut wasi = WasiCtx::builder();
    wasi.args(argv).inherit_stdout().inherit_stderr();
    grants.add_to_wasi(&mut wasi)?;
    let state = PluginState::new(wasi.build(), LocketCtx::new(Arc::clone(grants)));
    let mut store = Store::new(engine, state);
    let command = Command::instantiate_async(&mut store, component, linker).await?;
    let exit = match command.wasi_cli_run().call_run(&mut store).await {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Ok(*code),
            None => Err(format!("{e:#}")),
        },
    };
    let stats = store.data().locket.stats();
    Ok(Outcome {
        exit,
        acquired: stats.acquired,
        max_wait: stats.max_wait,
    })
}

fn main() -> std::process::ExitCode {
    match serve() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("serve: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs the instances; returns whether all of them succeeded.
fn serve() -> anyhow::Result<bool> {
    let options = parse()?;
    let engine = Engine::default();
    let mut linker = Linker::<PluginState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    locket_host::add_to_linker_async(&mut linker)?;
    let component = Component::from_file(&engine, &options.plugin)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("loading {}", options.plugin.display()))?;
    let name = options.plugin.file_name().map_or_else(
        || "plugin.wasm".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let argv: Arc<Vec<String>> = Arc::new(std::iter::once(name).chain(options.args).collect());
    let grants = Arc::new(options.grants);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let outcomes = runtime.block_on(async {
        let tasks: Vec<_> = (0..options.instances)
            .map(|_| {
                let (engine, linker) = (engine.clone(), linker.clone());
                let (component, grants, argv) =
                    (component.clone(), Arc::clone(&grants), Arc::clone(&argv));
                tokio::spawn(
                    async move { run_one(&engine, &linker, &component, &grants, &argv).await },
                )
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await?);
        }
        anyhow::Ok(outcomes)
    })?;
    let elapsed = started.elapsed();
    let (mut failed, mut acquired, mut max_wait) = (0, 0, Duration::ZERO);
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.with_context(|| format!("instance {i}"))?;
        acquired += outcome.acquired;
        max_wait = max_wait.max(outcome.max_wait);
        match outcome.exit {
            Ok(0) => {}
            Ok(code) => {
                failed += 1;
                eprintln!("instance {i}: exited with {code}");
            }
            Err(trap) => {
                failed += 1;
                eprintln!("instance {i}: {trap}");
            }
        }
    }
    println!(
        "served {} instances on {} worker threads in {elapsed:.2?}: {failed} failed, \
         {acquired} locks acquired, longest wait {max_wait:.2?}",
        options.instances, options.workers
    );
    Ok(failed == 0)
}
