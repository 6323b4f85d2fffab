//! How `locket holders` shows who holds and who waits for a lock (found by
//! [`locket::holders`]): a table for people, or JSON.

use std::fmt::Write as _;
use std::path::Path;

use locket::{Holder, Mode};

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Exclusive => "exclusive",
        Mode::Shared => "shared",
    }
}

fn state_name(holder: &Holder) -> &'static str {
    if holder.waiting { "waiting" } else { "holding" }
}

/// The holders as a table for people; control characters in command names
/// are escaped.
pub fn table(path: &Path, holders: &[Holder]) -> String {
    if holders.is_empty() {
        return format!("{}: not locked\n", path.display());
    }
    let mut out = format!("{:<8} {:<10} {:<8} COMMAND\n", "PID", "MODE", "STATE");
    for h in holders {
        let command: String = h.command.chars().flat_map(char::escape_default).collect();
        let _ = writeln!(
            out,
            "{:<8} {:<10} {:<8} {command}",
            h.pid,
            mode_name(h.mode),
            state_name(h)
        );
    }
    out
}

/// The holders as a JSON array of objects.
pub fn json(holders: &[Holder]) -> String {
    let items: Vec<String> = holders
        .iter()
        .map(|h| {
            format!(
                "{{\"pid\":{},\"mode\":\"{}\",\"state\":\"{}\",\"command\":{}}}",
                h.pid,
                mode_name(h.mode),
                state_name(h),
                json_string(&h.command)
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

pub fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(json_string("locket-host"), "\"locket-host\"");
    }
}
