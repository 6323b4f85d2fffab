//! SIGINT and SIGTERM: a run ends at once, with a message and exit code
//! 128 + the signal. The kernel then releases every file lock the plugin
//! held, even one it was waiting for inside the host. Its etcd locks are
//! freed when the host's lease expires: the plugin may be in the middle of a
//! write, and revoking the lease first would hand the lock on under it.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the run has etcd lock namespaces, for the signal message.
static ETCD: AtomicBool = AtomicBool::new(false);

/// Tells the handlers whether the run has etcd lock namespaces.
pub(crate) fn holds_etcd_locks(yes: bool) {
    ETCD.store(yes, Ordering::Relaxed);
}

/// Installs the handlers, except for a signal the shell told us to ignore
/// (`cmd &` ignores SIGINT).
pub(crate) fn exit_on_termination_signals() {
    extern "C" fn on_signal(signal: libc::c_int) {
        let message: &[u8] = match (signal == libc::SIGINT, ETCD.load(Ordering::Relaxed)) {
            (true, false) => {
                b"locket-host: interrupted (SIGINT); the plugin's locks are released\n"
            }
            (false, false) => {
                b"locket-host: terminated (SIGTERM); the plugin's locks are released\n"
            }
            (true, true) => {
                b"locket-host: interrupted (SIGINT); the plugin's file locks are released, \
                  its etcd locks when the lease expires (--lease-ttl)\n"
            }
            (false, true) => {
                b"locket-host: terminated (SIGTERM); the plugin's file locks are released, \
                  its etcd locks when the lease expires (--lease-ttl)\n"
            }
        };
        // SAFETY: write(2) and _exit(2) are async-signal-safe; `message` is a
        // static byte string.
        unsafe {
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(128 + signal);
        }
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `on_signal` only makes async-signal-safe calls, and takes the
    // one argument that flags 0 ask for.
    let installed =
        unsafe { locket_cmdline::handle_signals(&[libc::SIGINT, libc::SIGTERM], handler, 0) };
    if let Err(e) = installed {
        eprintln!("locket-host: warning: cannot handle SIGINT and SIGTERM: {e}");
    }
}
