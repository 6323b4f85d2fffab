// The plugin peer in JavaScript, written with the JavaScript SDK (`locket`)
// and built by `locket-js build` (the `locket-guest` npm package).
//
// It speaks the line protocol of tests/peers/README.md as the Rust and
// Python lockers do: it prints `ready`, then answers each line. Handle 0 is
// a lock on the path given as the first argument; a line may start with
// `#N` to act on handle N.
//
//     acquire [MS] | acquire-shared [MS]   acquired, or error: KIND: MESSAGE
//     release                              released, or an error
//     is-locked                            true or false
//     token                                token N, or token none
//     open PATH                            opened N (a new handle N)
//     drop                                 dropped
//     handoff [MS]                         waiting, then at NS once acquired (released right after)
//     increment DATA N                     incremented N: N rounds of acquire, add one to DATA, release
//     bench N [MS]                         bench NS: the mean ns of N acquire+release cycles, less an empty loop
//     exit [CODE]                          exits with CODE
//     throw                                an uncaught error (exit 1, with its stack)
//     alloc                                allocates memory, a MiB at a time, forever (a trap under --max-memory)
//
// Build:  npx locket-js build tests/peers/js-plugin/locker.js -o locker-js.wasm
// Run:    locket-host run --dir .::/data locker-js.wasm /data/x.lock

import { LockError, exit, lockFile, stdinLines } from "locket";
import { getDirectories } from "wasi:filesystem/preopens@0.2.12";
import { now } from "wasi:clocks/wall-clock@0.2.12";
import { now as monotonic } from "wasi:clocks/monotonic-clock@0.2.12";

function errorLine(e) {
  return `error: ${e.kind}: ${e.message}`;
}

function timeoutOf(words) {
  return words.length > 0 ? Number(words[0]) : null;
}

/** The granted directory and the relative path of a guest path. */
function resolveData(path) {
  for (const [dir, guest] of getDirectories()) {
    const prefix = guest.endsWith("/") ? guest : `${guest}/`;
    if (path.startsWith(prefix)) {
      return [dir, path.slice(prefix.length)];
    }
  }
  throw new Error(`${path} is not in a granted directory`);
}

function readNumber(path) {
  const [dir, rel] = resolveData(path);
  let text = "";
  try {
    const file = dir.openAt({}, rel, {}, { read: true });
    const size = file.stat().size;
    const [bytes] = file.read(size, 0n);
    text = new TextDecoder().decode(bytes);
    file[Symbol.dispose]();
  } catch (e) {
    if (!(e && e.payload && e.payload === "no-entry")) {
      throw e;
    }
  }
  return Number(text.trim() || "0");
}

function writeNumber(path, value) {
  const [dir, rel] = resolveData(path);
  const file = dir.openAt({}, rel, { create: true, truncate: true }, { write: true });
  file.write(new TextEncoder().encode(`${value}\n`), 0n);
  file[Symbol.dispose]();
}

function answer(handles, words) {
  let handle = 0;
  if (words[0].startsWith("#")) {
    handle = Number(words[0].slice(1));
    words = words.slice(1);
  }
  const [command, ...rest] = words;
  if (command === "open") {
    handles.push(lockFile(rest.length > 0 ? rest[0] : ""));
    return `opened ${handles.length - 1}`;
  }
  if (command === "exit") {
    exit(rest.length > 0 ? Number(rest[0]) : 0);
  }
  if (command === "throw") {
    throw new Error("throw requested");
  }
  if (command === "alloc") {
    const kept = [];
    for (;;) {
      const chunk = new Uint8Array(1 << 20);
      chunk.fill(1);
      kept.push(chunk);
    }
  }
  const lock = handles[handle];
  if (!lock) {
    return `error: no handle #${handle}`;
  }
  switch (command) {
    case "acquire":
      lock.acquire({ timeout: timeoutOf(rest) });
      return "acquired";
    case "acquire-shared":
      lock.acquireShared({ timeout: timeoutOf(rest) });
      return "acquired";
    case "release":
      lock.release();
      return "released";
    case "is-locked":
      return lock.isLocked() ? "true" : "false";
    case "token": {
      const token = lock.token();
      return token === null ? "token none" : `token ${token}`;
    }
    case "drop":
      lock.close();
      handles[handle] = null;
      return "dropped";
    case "handoff": {
      console.log("waiting");
      lock.acquire({ timeout: timeoutOf(rest) });
      const t = now();
      const at = t.seconds * 1000000000n + BigInt(t.nanoseconds);
      lock.release();
      return `at ${at}`;
    }
    case "increment": {
      const n = Number(rest[1]);
      for (let i = 0; i < n; i++) {
        lock.withLock(() => writeNumber(rest[0], readNumber(rest[0]) + 1));
      }
      return `incremented ${n}`;
    }
    case "bench": {
      const n = Number(rest[0]);
      const timeout = timeoutOf(rest.slice(1));
      let started = monotonic();
      for (let i = 0; i < n; i++) {
        lock.acquire({ timeout });
        lock.release();
      }
      const spent = monotonic() - started;
      started = monotonic();
      for (let i = 0; i < n; i++) {
        // the empty loop
      }
      const empty = monotonic() - started;
      const net = spent > empty ? spent - empty : 0n;
      return `bench ${Number(net) / Math.max(n, 1)}`;
    }
    default:
      return `error: unknown-command: ${JSON.stringify(command)}`;
  }
}

export function main(argv) {
  const handles = [];
  if (argv.length > 1) {
    try {
      handles.push(lockFile(argv[1]));
    } catch (e) {
      if (e instanceof LockError) {
        console.log(errorLine(e));
        return 1;
      }
      throw e;
    }
  }
  console.log("ready");
  for (const line of stdinLines()) {
    const words = line.split(/\s+/).filter((w) => w.length > 0);
    if (words.length === 0) {
      continue;
    }
    let reply;
    try {
      reply = answer(handles, words);
    } catch (e) {
      if (!(e instanceof LockError)) {
        throw e;
      }
      reply = errorLine(e);
    }
    console.log(reply);
  }
  return 0;
}
