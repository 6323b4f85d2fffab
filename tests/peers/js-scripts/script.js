// What a plugin built by `locket-js build` gets: its arguments, stdin and
// stdout, the exit code `main` returns, and a thrown error's message and
// exit code 1.
//
//     script CODE [WORDS...]   echoes stdin in capitals, exits with CODE
//     script throw             throws

import { stdinLines } from "locket";

export function main(argv) {
  console.log(`argv ${argv.slice(1).join(" ")}`);
  if (argv[1] === "throw") {
    throw new Error("thrown on purpose");
  }
  for (const line of stdinLines()) {
    console.log(`echo ${line.toUpperCase()}`);
  }
  return Number(argv[1]);
}
