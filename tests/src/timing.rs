//! The time bounds the tests share (a leaf, so that every module may use
//! them).

use std::time::Duration;

/// How long a test waits for an answer that should come promptly. It is a
/// generous upper bound for a loaded 2-core machine, not a speed claim.
pub const PROMPT: Duration = Duration::from_secs(10);
