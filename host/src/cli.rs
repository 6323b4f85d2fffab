//! Small value parsers for the command line, in the style of `wasmtime run`.

use std::path::PathBuf;

/// A `--dir HOST[::GUEST]` value.
#[derive(Debug, Clone)]
pub struct DirArg {
    pub host: PathBuf,
    pub guest: String,
}

/// Parses `HOST[::GUEST]`; without `::GUEST` the guest sees the directory
/// under the host path as written. The host directory must exist.
pub fn parse_dir(s: &str) -> Result<DirArg, String> {
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

/// Parses `NAME[=VAL]`; a bare NAME passes the host's value through.
pub fn parse_env(s: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match s.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (s, None),
    };
    if name.is_empty() {
        return Err(format!("expected NAME[=VAL], got {s:?}"));
    }
    Ok((name.to_owned(), value))
}

pub use locket::parse_duration;

/// Parses a size in bytes: a whole number with an optional unit (`K`, `M`,
/// `G`, with or without `iB`/`B`, all powers of 1024), like `64M` or `1GiB`.
pub fn parse_size(s: &str) -> Result<usize, String> {
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
    fn env_takes_an_optional_value() {
        assert_eq!(parse_env("A=1"), Ok(("A".into(), Some("1".into()))));
        assert_eq!(parse_env("A="), Ok(("A".into(), Some(String::new()))));
        assert_eq!(parse_env("A"), Ok(("A".into(), None)));
        assert!(parse_env("=1").is_err());
    }
}
