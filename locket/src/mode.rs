/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One holder at a time (`LOCK_EX`), as in locket.py.
    Exclusive,
    /// Any number of shared holders, but no exclusive one (`LOCK_SH`).
    Shared,
}

impl Mode {
    /// Whether a hold in `self` mode excludes a hold in `other` mode.
    #[must_use]
    pub fn conflicts_with(self, other: Mode) -> bool {
        self == Mode::Exclusive || other == Mode::Exclusive
    }
}
