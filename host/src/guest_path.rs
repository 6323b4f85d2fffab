//! The text of a guest path: checked once, put in normal form, and matched
//! against grants component by component. Nothing here touches the
//! filesystem.

/// Why a guest path was refused before touching the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    /// It cannot name a file anywhere: empty, or with a NUL byte (the words
    /// are `locket`'s, which checks native paths the same way).
    Text(&'static str),
    /// It ends in a slash, which names a directory.
    TrailingSlash,
    /// Outside every grant: no grant's guest path is a prefix, or `..` climbs
    /// out of the relative root.
    OutsideGrants,
}

impl PathError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Text(reason) => reason,
            Self::TrailingSlash => "a trailing slash names a directory, not a lock file",
            Self::OutsideGrants => "the path is outside the granted directories",
        }
    }
}

/// A path with `.`, `..` and repeated slashes resolved lexically.
///
/// `..` at the root of an absolute path stays at the root, as in POSIX; `..`
/// above the start of a relative path is outside every grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normal {
    absolute: bool,
    pub(crate) parts: Vec<String>,
}

impl Normal {
    pub(crate) fn parse(path: &str) -> Result<Self, PathError> {
        if let Some(reason) = locket::invalid_path_reason(path.as_ref()) {
            return Err(PathError::Text(reason));
        }
        if path.len() > 1 && path.ends_with('/') {
            return Err(PathError::TrailingSlash);
        }
        let absolute = path.starts_with('/');
        let mut parts: Vec<String> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() && !absolute {
                        return Err(PathError::OutsideGrants);
                    }
                }
                other => parts.push(other.to_owned()),
            }
        }
        Ok(Self { absolute, parts })
    }

    /// The path written out in its normal form.
    pub(crate) fn text(&self) -> String {
        match (self.absolute, self.parts.is_empty()) {
            (true, _) => format!("/{}", self.parts.join("/")),
            (false, true) => ".".to_owned(),
            (false, false) => self.parts.join("/"),
        }
    }

    /// Whether `other` is this path or lies beneath it, component by component.
    pub(crate) fn contains(&self, other: &Normal) -> bool {
        self.absolute == other.absolute && other.parts.starts_with(&self.parts)
    }
}
