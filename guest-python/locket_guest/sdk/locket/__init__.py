"""File locks for Python plugins, with the API of locket.py 1.0.0.

Code written for Python's ``locket`` runs unchanged inside a plugin built
with componentize-py (``locket-py build``) and run by ``locket-host run``::

    import locket

    with locket.lock_file("/data/counter.lock", timeout=5):
        ...  # change what the lock protects

    lock = locket.lock_file("/data/counter.lock")
    lock.acquire()
    try:
        ...
    finally:
        lock.release()

The locks are the host's real OS file locks (``flock``), so a plugin
excludes, and is excluded by, native processes using locket.py, filelock,
util-linux ``flock(1)`` or Rust's ``locket`` on the same file, and other
plugins. Paths are guest paths, inside the directories the host granted
(``--dir HOST::GUEST``), or names in an etcd lock namespace it granted
(``--locks etcd://...::GUEST``).

As in locket.py:

- ``lock_file(path, timeout=None, retry_period=None)`` names a lock and
  takes nothing; ``acquire()`` waits as long as it takes with ``timeout``
  None, tries once with 0, and otherwise waits at most ``timeout`` seconds
  (a float), raising ``LockError("Couldn't lock PATH")``;
- ``release()`` of a lock not held raises
  ``LockError("cannot release unlocked lock")``;
- the object is a context manager that acquires on entry and releases on
  exit;
- ``retry_period`` is accepted and ignored: the host waits in the kernel (or
  on an etcd watch) instead of polling, and wakes as soon as the lock is
  free.

What this module adds, in Python's style: shared locks
(``acquire(shared=True)``, ``acquire_shared()``), a per-call timeout
(``acquire(timeout=...)``), ``is_locked()``, ``token()`` (the fencing token
of a lock in an etcd namespace), and one subclass of ``LockError`` for each
error the host reports (``Timeout``, ``NotLocked``, ``Deadlock``,
``AccessDenied``, ``InvalidPath``, ``TooManyLocks``, ``LockIOError``), so
that ``except locket.LockError`` still catches them all.

Where it differs from locket.py, and why:

- **Ownership is per lock object, not per path.** locket.py shares one lock
  per path in a process, so any of its ``lock_file(path)`` objects may
  release what another acquired. Here each object owns what it acquires,
  as each handle of the WIT interface does: ``release()`` on an object that
  does not hold the lock raises ``NotLocked``, even if another object holds
  it.
- **A second acquire of a lock this plugin already holds fails at once**
  with ``Deadlock`` (a ``LockError``), whatever its timeout. In locket.py a
  second thread would wait for the first; a plugin has one thread, so that
  wait could never end, and the host says so instead of hanging.
- **The lock file is never truncated.** locket.py opens it with mode
  ``"wb"``; the host creates it if missing and never changes its content.
- Errors that locket.py would raise as ``OSError`` (a missing directory, a
  path outside the grants) are ``LockError`` subclasses here, raised by the
  first ``acquire()``; a path that is plainly invalid (empty, NUL, outside
  every grant) is refused by ``lock_file`` itself.
"""

import math
import os

from componentize_py_types import Err
from wit_world.imports import locket as _wit

__all__ = [
    "lock_file",
    "Lock",
    "LockError",
    "Timeout",
    "NotLocked",
    "Deadlock",
    "AccessDenied",
    "InvalidPath",
    "TooManyLocks",
    "LockIOError",
]

_U64_MAX = (1 << 64) - 1


class LockError(Exception):
    """A lock could not be acquired or released, as in locket.py."""


class Timeout(LockError):
    """The lock was held elsewhere until the timeout ran out (at once with
    a timeout of 0)."""


class NotLocked(LockError):
    """``release()`` on a lock object that does not hold the lock."""


class Deadlock(LockError):
    """This plugin already holds the lock in a conflicting mode (through
    this object or another), so waiting could never end."""


class AccessDenied(LockError):
    """The path is outside the granted directories, or the lock file is
    missing under a read-only grant."""


class InvalidPath(LockError):
    """The path cannot name a lock: empty, NUL, a directory, a FIFO..."""


class TooManyLocks(LockError):
    """The plugin has as many lock objects as the host allows
    (``--max-locks``); drop some first."""


class LockIOError(LockError):
    """Any other error the host reports, with its message."""


def _error(err, path, releasing=False):
    """The ``LockError`` for a WIT error value."""
    value = err.value if isinstance(err, Err) else err
    if releasing and isinstance(value, _wit.Error_Io):
        return LockIOError("Couldn't release {0}: {1}".format(path, value.value))
    if isinstance(value, _wit.Error_Timeout):
        return Timeout("Couldn't lock {0}".format(path))
    if isinstance(value, _wit.Error_NotLocked):
        return NotLocked("cannot release unlocked lock")
    if isinstance(value, _wit.Error_Deadlock):
        return Deadlock(
            "Couldn't lock {0}: this plugin already holds it, and waiting "
            "could never end".format(path)
        )
    if isinstance(value, _wit.Error_AccessDenied):
        return AccessDenied("Couldn't lock {0}: access denied".format(path))
    if isinstance(value, _wit.Error_InvalidPath):
        return InvalidPath("Couldn't lock {0}: {1}".format(path, value.value))
    if isinstance(value, _wit.Error_Limit):
        return TooManyLocks(
            "Couldn't lock {0}: too many locks (del some lock objects first)".format(path)
        )
    if isinstance(value, _wit.Error_Io):
        return LockIOError("Couldn't lock {0}: {1}".format(path, value.value))
    return LockError("Couldn't lock {0}: {1!r}".format(path, value))


def _nanoseconds(timeout):
    """The WIT timeout for a timeout in seconds: None waits, 0 (or less)
    tries once. As in locket.py, a timeout that never runs out (infinity,
    NaN, one too large for a float) waits as long as it takes."""
    if timeout is None:
        return None
    try:
        seconds = float(timeout)
    except OverflowError:
        return None
    if math.isnan(seconds) or math.isinf(seconds) and seconds > 0:
        return None
    if seconds <= 0:
        return 0
    return min(int(seconds * 1_000_000_000), _U64_MAX)


_DEFAULT = object()


class Lock(object):
    """A lock on one file (or etcd name), as ``lock_file`` returns it. It
    owns what it acquires; dropping the object releases it too."""

    def __init__(self, path, timeout=None, retry_period=None):
        # Any path open() takes, as in locket.py: str, bytes, os.PathLike.
        path = os.fsdecode(os.fspath(path))
        self._path = path
        self._timeout = timeout
        # Accepted for locket.py's sake; the host never polls.
        self._retry_period = retry_period
        try:
            self._handle = _wit.lock_file(path)
        except Err as err:
            raise _error(err, path) from None

    @property
    def path(self):
        """The path the lock was named with."""
        return self._path

    def acquire(self, timeout=_DEFAULT, shared=False):
        """Takes the lock, exclusive unless ``shared``. ``timeout`` (seconds)
        defaults to the one given to ``lock_file``: None waits as long as it
        takes, 0 tries once. Raises ``Timeout`` (a ``LockError``) if it is
        held elsewhere for the whole timeout."""
        wait = _nanoseconds(self._timeout if timeout is _DEFAULT else timeout)
        try:
            if shared:
                self._handle.acquire_shared(wait)
            else:
                self._handle.acquire(wait)
        except Err as err:
            raise _error(err, self._path) from None

    def acquire_shared(self, timeout=_DEFAULT):
        """Takes a shared (reader) lock: shared holders exclude exclusive
        ones, not each other."""
        self.acquire(timeout=timeout, shared=True)

    def release(self):
        """Releases the lock this object holds; raises ``NotLocked`` (a
        ``LockError``) if it holds nothing."""
        try:
            self._handle.release()
        except Err as err:
            raise _error(err, self._path, releasing=True) from None

    def is_locked(self):
        """Whether this object holds the lock now (false once a lock in an
        etcd namespace is lost)."""
        return self._handle.is_locked()

    def token(self):
        """The fencing token of the grant this object holds, for a lock in
        an etcd namespace: it grows with every grant of the lock, across
        the cluster. None for a file lock, while nothing is held, and once
        the lock is lost. Send it with every change to what the lock
        protects, and have that side refuse a token lower than the highest
        it has accepted: a lease-based lock is only safe with that check."""
        return self._handle.token()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *args):
        self.release()

    def __repr__(self):
        state = "locked" if self.is_locked() else "unlocked"
        return "<locket.Lock {0!r} {1}>".format(self._path, state)


def lock_file(path, timeout=None, retry_period=None):
    """Names the lock on the file at ``path``, as locket.py's ``lock_file``.

    ``timeout`` (seconds; None waits as long as it takes, 0 tries once) is
    what ``acquire()`` and the context manager use. ``retry_period`` is
    accepted and ignored. Takes no lock and touches no file; a path the host
    refuses outright raises a ``LockError`` subclass here.
    """
    return Lock(path, timeout=timeout, retry_period=retry_period)
