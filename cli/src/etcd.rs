//! `locket lock` and `locket holders` for etcd locks (`etcd://...`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use locket_etcd::{Address, Connect, DEFAULT_CONNECT_TIMEOUT, Error, Holder, Mode, Session};

use crate::args::LockArgs;
use crate::holders::mode_name;

/// Exit code when the cluster cannot be used: unreachable, no quorum
/// (EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;
/// Exit code when the cluster refuses the credentials (EX_NOPERM).
const EXIT_NOPERM: u8 = 77;

/// The etcd address in `path`, if it is one.
pub fn address_of(path: &Path) -> Option<&str> {
    path.to_str().filter(|p| Address::is_etcd(p))
}

/// The exit code for an error that is not a conflict.
fn failure(e: &Error) -> ExitCode {
    eprintln!("locket: {e}");
    ExitCode::from(match e {
        Error::InvalidAddress { .. }
        | Error::InvalidName { .. }
        | Error::Settings(_)
        | Error::Config { .. } => 2,
        Error::Auth { .. } => EXIT_NOPERM,
        _ => EXIT_UNAVAILABLE,
    })
}

fn connect(text: &str, args: Option<&LockArgs>) -> Result<(Session, String), Error> {
    let address = Address::parse(text)?;
    let mut connect = Connect::new(address.cluster)
        .from_env()?
        .check_access(address.name.clone());
    if let Some(args) = args {
        if let Some(ttl) = args.lease_ttl {
            connect = connect.lease_ttl(ttl);
        }
        // Whoever waits for the lock may wait as long for the cluster (a
        // leader election, say); without --wait, a dead cluster is reported
        // within the connect timeout rather than waited for.
        if let Some(wait) = args.wait {
            connect = connect.connect_timeout(wait.max(DEFAULT_CONNECT_TIMEOUT));
        }
    }
    Ok((connect.session()?, address.name))
}

/// `locket lock etcd://... -- COMMAND`.
pub fn lock_and_run(text: &str, args: &LockArgs) -> ExitCode {
    let (session, name) = match connect(text, Some(args)) {
        Ok(s) => s,
        Err(e) => return failure(&e),
    };
    let lock = match session.lock(&name) {
        Ok(lock) => lock,
        Err(e) => return failure(&e),
    };
    let mode = if args.shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    match lock.acquire_with(mode, args.wait) {
        Ok(()) => {}
        Err(e @ Error::Timeout { .. }) => {
            eprintln!("locket: {e}");
            return ExitCode::from(args.conflict_exit_code);
        }
        Err(e) => return failure(&e),
    }
    let token = lock.token().map(|t| t.to_string()).unwrap_or_default();
    let code = crate::child::run(&args.command, [("LOCKET_TOKEN", token)]);
    if !lock.is_locked() {
        eprintln!(
            "locket: the lock {name} was lost while the command ran (its lease expired); \
             writes fenced with LOCKET_TOKEN are refused from then on"
        );
    }
    // Dropping the lock and then the session deletes the key and revokes
    // the lease before the process exits.
    drop(lock);
    drop(session);
    code
}

/// `locket holders etcd://...`.
pub fn list_holders(text: &str, json: bool) -> ExitCode {
    let (session, name) = match connect(text, None) {
        Ok(s) => s,
        Err(e) => return failure(&e),
    };
    match session.holders(&name) {
        Ok(list) => {
            if json {
                print!("{}", as_json(&list));
            } else {
                print!("{}", table(&name, &list));
            }
            ExitCode::SUCCESS
        }
        Err(e) => failure(&e),
    }
}

fn state_name(h: &Holder) -> &'static str {
    if h.holding { "holding" } else { "waiting" }
}

fn ttl_text(h: &Holder) -> String {
    h.ttl_left
        .map_or_else(|| "-".to_owned(), |t| format!("{}s", t.as_secs()))
}

fn table(name: &str, list: &[Holder]) -> String {
    if list.is_empty() {
        return format!("{name}: not locked\n");
    }
    let mut out = format!(
        "{:<18} {:<6} {:<10} {:<8} {:<10} {:<8} HOST\n",
        "LEASE", "TTL", "MODE", "STATE", "TOKEN", "PID"
    );
    for h in list {
        let pid = h.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let host: String = h
            .host
            .as_deref()
            .unwrap_or("-")
            .chars()
            .flat_map(char::escape_default)
            .collect();
        let _ = writeln!(
            out,
            "{:<18} {:<6} {:<10} {:<8} {:<10} {:<8} {host}",
            format!("{:x}", h.lease),
            ttl_text(h),
            mode_name(h.mode),
            state_name(h),
            h.revision,
            pid
        );
    }
    out
}

fn as_json(list: &[Holder]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|h| {
            format!(
                "{{\"key\":{},\"lease\":\"{:x}\",\"ttl_left\":{},\"mode\":\"{}\",\"state\":\"{}\",\"token\":{},\"pid\":{},\"host\":{}}}",
                crate::holders::json_string(&h.key),
                h.lease,
                h.ttl_left.map_or_else(|| "null".to_owned(), |t| t.as_secs().to_string()),
                mode_name(h.mode),
                state_name(h),
                h.revision,
                h.pid.map_or_else(|| "null".to_owned(), |p| p.to_string()),
                h.host
                    .as_deref()
                    .map_or_else(|| "null".to_owned(), crate::holders::json_string),
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}
