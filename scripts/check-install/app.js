// The JavaScript plugin of scripts/check-install.sh, built by the installed
// `locket-js`: while another process holds the lock file (argument 1), a
// try-once acquire prints `timeout`; then a waiting acquire prints
// `acquired` once the lock is free.
import { lockFile, TimeoutError } from "locket";

export function main([, path]) {
  try {
    lockFile(path, { timeout: 0 }).acquire();
    console.log("acquired while held elsewhere");
    return 1;
  } catch (e) {
    if (!(e instanceof TimeoutError)) {
      throw e;
    }
    console.log("timeout");
  }
  const lock = lockFile(path);
  lock.acquire();
  console.log("acquired");
  lock.release();
  return 0;
}
