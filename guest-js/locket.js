// File locks for JavaScript plugins: the `locket:lock` interface with the
// shape JavaScript users expect. Built into a plugin by `locket-js build`
// (componentize-js, pinned in guest-js/package.json) and run by
// `locket-host run`.
//
//     import { lockFile } from "locket";
//
//     export function main(argv) {
//       const lock = lockFile("/data/counter.lock", { timeout: 5000 });
//       lock.withLock(() => {
//         // ... change what the lock protects
//       });
//       return 0;
//     }
//
// The locks are the host's real OS file locks (flock), so a plugin excludes,
// and is excluded by, native processes (Python's locket and filelock,
// util-linux flock(1), Rust's locket) and other plugins on the same file.
// Paths are guest paths inside the directories the host granted (`--dir
// HOST::GUEST`), or names in an etcd lock namespace (`--locks ...::GUEST`).
//
// Timeouts are in milliseconds: `undefined` or `null` waits as long as it
// takes, `0` tries once. Each Lock owns what it acquires; a second acquire
// of a lock this plugin already holds throws DeadlockError at once, since a
// plugin's single thread could never see it released.

import { lockFile as witLockFile } from "locket:lock/locket@0.1.1";
import { getStdin } from "wasi:cli/stdin@0.2.12";
import { exitWithCode } from "wasi:cli/exit@0.2.12";

/** A lock operation failed. `kind` is the WIT error case. */
export class LockError extends Error {
  constructor(message, kind) {
    super(message);
    this.kind = kind;
  }
}

/** Held elsewhere until the timeout ran out (at once with a timeout of 0). */
export class TimeoutError extends LockError {}
/** `release()` on a Lock that does not hold the lock. */
export class NotLockedError extends LockError {}
/** This plugin already holds the lock in a conflicting mode. */
export class DeadlockError extends LockError {}
/** Outside the granted directories, or missing under a read-only grant. */
export class AccessDeniedError extends LockError {}
/** A path that cannot name a lock: empty, NUL, a directory, a FIFO... */
export class InvalidPathError extends LockError {}
/** As many locks as the host allows (`--max-locks`). */
export class TooManyLocksError extends LockError {}
/** Any other error the host reports, with its message. */
export class LockIOError extends LockError {}

const KINDS = {
  timeout: [TimeoutError, (path) => `timed out waiting for the lock ${path}`],
  "not-locked": [NotLockedError, (path) => `the lock ${path} is not held by this Lock`],
  deadlock: [
    DeadlockError,
    (path) => `this plugin already holds the lock ${path}; waiting could never end`,
  ],
  "access-denied": [AccessDeniedError, (path) => `access denied to ${path}`],
  "invalid-path": [InvalidPathError, (path, why) => `invalid lock path ${JSON.stringify(path)}: ${why}`],
  limit: [TooManyLocksError, () => "too many locks (the host's --max-locks)"],
  io: [LockIOError, (path, why) => `cannot lock ${path}: ${why}`],
};

// `error.name` is the class name, as for JavaScript's own errors.
for (const cls of [LockError, ...Object.values(KINDS).map(([cls]) => cls)]) {
  Object.defineProperty(cls.prototype, "name", { value: cls.name, writable: true, configurable: true });
}

/** The LockError for what a WIT call threw; anything else is rethrown. */
function lockError(thrown, path) {
  const error = thrown && thrown.payload;
  const known = error && KINDS[error.tag];
  if (!known) {
    return thrown;
  }
  const [cls, message] = known;
  return new cls(message(path, error.val), error.tag);
}

/** The WIT timeout (nanoseconds, a u64) for one in milliseconds. */
function nanoseconds(ms) {
  if (ms === undefined || ms === null || ms === Infinity) {
    return undefined;
  }
  const n = Number(ms);
  if (Number.isNaN(n)) {
    throw new TypeError(`timeout must be a number of milliseconds, not ${ms}`);
  }
  if (n <= 0) {
    return 0n;
  }
  if (!Number.isFinite(n) || n >= 1.8e13) {
    return (1n << 64n) - 1n;
  }
  const ns = BigInt(Math.floor(n * 1e6));
  const max = (1n << 64n) - 1n;
  return ns > max ? max : ns;
}

/**
 * Options as given: an object, a bare number of milliseconds (taken as the
 * timeout), or nothing.
 */
function optionsOf(options) {
  if (options === undefined || options === null) {
    return {};
  }
  if (typeof options === "number") {
    return { timeout: options };
  }
  if (typeof options !== "object") {
    throw new TypeError(`options must be an object or a timeout in milliseconds, not ${options}`);
  }
  return options;
}

/** Whether `value` is a promise, or another thenable. */
function isThenable(value) {
  return value !== null && (typeof value === "object" || typeof value === "function") && typeof value.then === "function";
}

/** A lock on one file (or etcd name), as `lockFile` returns it. */
export class Lock {
  #handle;
  #path;
  #timeout;

  constructor(path, options) {
    this.#path = path;
    this.#timeout = optionsOf(options).timeout;
    try {
      this.#handle = witLockFile(path);
    } catch (e) {
      throw lockError(e, path);
    }
  }

  /** The path the lock was named with. */
  get path() {
    return this.#path;
  }

  /**
   * Takes the lock, exclusive unless `shared`. `timeout` (ms) defaults to
   * the one given to `lockFile`. Throws TimeoutError when it is held
   * elsewhere for the whole timeout.
   */
  acquire(options) {
    const { timeout = this.#timeout, shared = false } = optionsOf(options);
    const wait = nanoseconds(timeout);
    try {
      if (shared) {
        this.#handle.acquireShared(wait);
      } else {
        this.#handle.acquire(wait);
      }
    } catch (e) {
      throw lockError(e, this.#path);
    }
  }

  /** Takes a shared (reader) lock. */
  acquireShared(options) {
    const { timeout = this.#timeout } = optionsOf(options);
    this.acquire({ timeout, shared: true });
  }

  /** Releases what this Lock holds; NotLockedError if it holds nothing. */
  release() {
    try {
      this.#handle.release();
    } catch (e) {
      throw lockError(e, this.#path);
    }
  }

  /** Whether this Lock holds the lock now. */
  isLocked() {
    return this.#handle.isLocked();
  }

  /**
   * The fencing token (a bigint) of the grant this Lock holds, for a lock in
   * an etcd namespace; null for a file lock, while nothing is held, and once
   * the lock is lost. Send it with every change to what the lock protects,
   * and have that side refuse a token lower than the highest it accepted.
   */
  token() {
    const token = this.#handle.token();
    return token === undefined ? null : token;
  }

  /**
   * Runs `fn` while holding the lock, and releases it in `finally`, also when
   * `fn` throws. If `fn` returns a promise, the lock is released once it
   * settles. Returns what `fn` returns.
   */
  withLock(fn, options) {
    this.acquire(options);
    let result;
    try {
      result = fn(this);
    } catch (e) {
      this.release();
      throw e;
    }
    if (isThenable(result)) {
      return Promise.resolve(result).finally(() => this.release());
    }
    this.release();
    return result;
  }

  /** Releases what it holds, and gives the handle back to the host. */
  close() {
    if (this.#handle) {
      this.#handle[Symbol.dispose]();
      this.#handle = undefined;
    }
  }

  /** `using lock = lockFile(...)` closes it at the end of the block. */
  [Symbol.dispose]() {
    this.close();
  }
}

/**
 * Names the lock on the file at `path`. `timeout` (ms) is what `acquire()`
 * uses by default: undefined waits, 0 tries once. Takes no lock and touches
 * no file; a path the host refuses outright throws a LockError here.
 */
export function lockFile(path, options) {
  return new Lock(path, options);
}

/**
 * Runs `fn` under the lock on `path`, released in `finally` (after a
 * returned promise settles), and closes the lock.
 */
export function withLock(path, options, fn) {
  const lock = lockFile(path, options);
  let result;
  try {
    result = lock.withLock(fn, options);
  } catch (e) {
    lock.close();
    throw e;
  }
  if (isThenable(result)) {
    return result.finally(() => lock.close());
  }
  lock.close();
  return result;
}

/** The lines of stdin, read as they come (a plugin has no `process`). */
export function* stdinLines() {
  const input = getStdin();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    let chunk;
    try {
      chunk = input.blockingRead(65536n);
    } catch (e) {
      if (e && e.payload && e.payload.tag === "closed") {
        break;
      }
      throw e;
    }
    pending += decoder.decode(chunk, { stream: true });
    let at;
    while ((at = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, at);
      pending = pending.slice(at + 1);
    }
  }
  if (pending) {
    yield pending;
  }
}

/** Ends the plugin with exit code `code` (0 to 255). */
export function exit(code) {
  exitWithCode(code & 0xff);
}
