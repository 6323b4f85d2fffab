//! `locket-host`: runs WebAssembly plugin components that lock files beside
//! native processes.
//!
//! This file only dispatches: each subcommand has a file of its own
//! (`run.rs`, `compile.rs`; the hidden `fill-cache` that `run` starts is in
//! `cache.rs`, beside the cache it fills), the flags are in `cli.rs`, and
//! what the subcommands share is in `engine.rs` (the engines, compiling),
//! `plugin_file.rs` (opening and telling apart plugin files), `cache.rs`
//! (the compiled-code cache) and `load.rs` (how `run` gets its code).

mod cache;
mod cli;
mod compile;
mod engine;
mod load;
mod plugin_file;
mod run;
mod signals;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command, EXIT_USAGE};

fn main() -> ExitCode {
    let command = parse_command_line();
    locket_cmdline::init_tracing();
    let outcome = match command {
        Command::Run(args) => run::run(args),
        Command::Compile(args) => compile::compile(&args).map(|()| ExitCode::SUCCESS),
        Command::FillCache(args) => {
            cache::fill_cache(&args.plugin, args.fuel).map(|()| ExitCode::SUCCESS)
        }
    };
    // An `Err` is a failure before any plugin ran: loading, validation,
    // set-up. A plugin's own outcome is the `Ok` exit code.
    outcome.unwrap_or_else(|e| {
        eprintln!("locket-host: error: {e:#}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// The command line, with a `--version` that also names what the host
/// serves and what it is built on.
fn parse_command_line() -> Command {
    // A component built against an earlier release of the same semver
    // series (the same major; for 0.x, the same minor) runs too: say which.
    let wit = locket_host::WIT_PACKAGE;
    let release = wit.rsplit_once('@').map_or(wit, |(_name, v)| v);
    let series = match release.split('.').collect::<Vec<_>>()[..] {
        ["0", minor, ..] => format!("0.{minor}"),
        [major, ..] => major.to_owned(),
        [] => release.to_owned(),
    };
    let version = format!(
        "{} ({wit} and earlier {series}.x, WASI {}, wasmtime {})",
        env!("CARGO_PKG_VERSION"),
        locket_host::WASI_VERSION,
        locket_host::WASMTIME_VERSION,
    );
    // clap keeps the text for the life of the process anyway.
    let version: &'static str = version.leak();
    let matches = Cli::command().version(version).get_matches();
    Cli::from_arg_matches(&matches)
        .unwrap_or_else(|e| e.exit())
        .command
}
