// npm pack leaves symbolic links out, so the WIT and the license, which live
// once at the top of the repository, are copied in for the pack
// (`prepack`) and removed after it (`postpack`). The copies are never
// committed: wit/ at the top of the repository stays the one source.
import { cp, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const copies = [
  ["wit", "wit"],
  ["LICENSE", "LICENSE"],
];

for (const [, to] of copies) {
  await rm(join(here, to), { recursive: true, force: true });
}
if (process.argv[2] === "copy") {
  for (const [from, to] of copies) {
    await cp(join(root, from), join(here, to), { recursive: true });
  }
} else if (process.argv[2] !== "clean") {
  console.error("usage: node pack-files.mjs copy|clean");
  process.exit(2);
}
