// Prints the address from a `nanollm serve` log once its ready line is there; exits 1 before that.
// scripts/run.sh uses it, so readiness is found the one way tests and bench find it (readyAddress).
import fs from "node:fs";
import { readyAddress } from "../shared/dist/ready.js";

const address = readyAddress(fs.existsSync(process.argv[2]) ? fs.readFileSync(process.argv[2], "utf8") : "");
if (!address) process.exit(1);
process.stdout.write(`${address}\n`);
