// Adds 1 to a counter N times, each time under the lock file LOCK, with the
// JavaScript SDK: the example of the SDK's README section, which the tests
// build with `locket-js build` and run beside native processes.
//
//     locket-host run --dir ./shared::/data counter.wasm /data/counter.lock /data/counter N

import { lockFile } from "locket";
import { getDirectories } from "wasi:filesystem/preopens@0.2.12";

// StarlingMonkey has no `fs`: files are reached through WASI's preopens.
function open(path, openFlags, flags) {
  for (const [dir, guest] of getDirectories()) {
    if (path.startsWith(`${guest}/`)) {
      return dir.openAt({}, path.slice(guest.length + 1), openFlags, flags);
    }
  }
  throw new Error(`${path} is not in a granted directory`);
}

function addOne(path) {
  const file = open(path, { create: true }, { read: true, write: true });
  try {
    const [bytes] = file.read(64n, 0n);
    const value = Number(new TextDecoder().decode(bytes).trim() || "0");
    file.setSize(0n);
    file.write(new TextEncoder().encode(`${value + 1}\n`), 0n);
  } finally {
    file[Symbol.dispose]();
  }
}

export function main([, lockPath, data, n]) {
  if (!data || !(Number(n) >= 0)) {
    console.error("usage: counter LOCK DATA N");
    return 2;
  }
  const lock = lockFile(lockPath, { timeout: 60000 });
  for (let i = 0; i < Number(n); i++) {
    lock.withLock(() => addOne(data));
  }
  console.log(`counted ${n}`);
  return 0;
}
