//! What the `locket` and `locket-host` commands share: the syntax of
//! durations on their command lines, their `RUST_LOG` output, and how they
//! install signal handlers. A crate of its own, so that the lock library
//! (`locket-file`) has nothing of a command line in it.

#![warn(missing_docs)]

use std::time::Duration;

/// Parses a duration: a number with an optional unit (`ns`, `us`, `ms`, `s`,
/// `m`, `h`); a bare number is seconds, and fractions are allowed
/// (`500ms`, `2s`, `1m`, `0.5`).
///
/// # Errors
///
/// A message naming the problem: not a number, an unknown unit, negative, or
/// longer than a century.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!(
            "invalid duration {s:?}: expected a number with an optional unit, like 500ms, 2s or 1m"
        )
    })?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {other:?} (use ns, us, ms, s, m or h)"
            ));
        }
    };
    let duration = Duration::try_from_secs_f64(value * scale)
        .map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    // Far beyond any run, and small enough to add to a clock without overflow.
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    if duration > CENTURY {
        return Err(format!("invalid duration {s:?}: longer than a century"));
    }
    Ok(duration)
}

/// Prints `tracing` events to stderr when `RUST_LOG` asks for them (for
/// example `RUST_LOG=locket=debug`), and nothing otherwise. Colours only on
/// a terminal.
pub fn init_tracing() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Installs `handler` for each of `signals`, with `flags` (such as
/// `SA_RESTART` or `SA_SIGINFO`) and an empty mask, except for a signal the
/// process was started ignoring: a shell's `cmd &` ignores SIGINT, and that
/// must stay so. Returns how many it installed.
///
/// # Errors
///
/// If `sigaction` refuses a signal (an invalid number, or one that cannot be
/// caught); the signals before it keep their new handler.
///
/// # Safety
///
/// `handler` must make only async-signal-safe calls, and have the signature
/// that `flags` asks for: `extern "C" fn(c_int)`, or with `SA_SIGINFO`
/// `extern "C" fn(c_int, *mut siginfo_t, *mut c_void)`.
#[cfg(unix)]
pub unsafe fn handle_signals(
    signals: &[libc::c_int],
    handler: libc::sighandler_t,
    flags: libc::c_int,
) -> std::io::Result<usize> {
    let mut installed = 0;
    for &signal in signals {
        // SAFETY: a null `act` only reads the disposition into `old`, which
        // is valid for writes.
        let ignored = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            old.sa_sigaction == libc::SIG_IGN
        };
        // A program leaves a signal ignored when its parent asked for that.
        if ignored {
            continue;
        }
        // SAFETY: `action` is zeroed plain data with the fields sigaction
        // reads set; the caller vouches for the handler.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler;
            action.sa_flags = flags;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        installed += 1;
    }
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_fractions_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        for bad in [
            "",
            "ms",
            "-1s",
            "1.2.3s",
            "5 parsecs",
            "1e9999",
            "10000000000000000000",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
