//! The fixtures of the cross-process tests, which the demo and the
//! benchmark use too: the peers, and the helpers the tests share.
//!
//! A *peer* is a real process that holds a lock and is driven by lines: the
//! `locket` library (`locket-peer`), a plugin under `locket-host`
//! (`locker.wasm`), Python's locket and py-filelock, and util-linux flock(1).
//! They all speak one line protocol with one error vocabulary, written down
//! in `tests/peers/README.md`. [`Peer`] says how to start each kind, and
//! [`LineProcess`] drives one. The plugins are built for wasm32-wasip2 by
//! this crate's build script; [`guests`] has their paths.

#[cfg(target_os = "linux")]
pub mod etcd;

mod timing;
pub use timing::PROMPT;

mod line_process;
mod peers;
mod plugins;
mod process;

pub use line_process::LineProcess;
pub use peers::{Peer, holder_hands_over, venv_python};
pub use plugins::{
    dist, guests, js_plugin, js_script_plugin, plugin_ends_and_frees, plugin_incrementer,
    python_plugin, python_script_plugin, run_plugin_with_input,
};
pub use process::{
    entries, flock_incrementer, grant, host_command, host_exe, lock_waiters, locket_exe,
    native_incrementer, native_peer_exe, output_with_input, posix_timers, raw_lock_file,
    read_number, root, scratch, sibling_exe, wait_for_waiters,
};
