import path from "node:path";
import { Command } from "commander";
import { NanoError, readEnv } from "@nanollm/shared";
import { loadDaemon } from "./loadDaemon.js";

/** `nanollm tokens add|list|revoke`: the bearer tokens a daemon accepts, kept as hashes in DATA_DIR/tokens.json. */
export function tokensCommand(): Command {
  const env = readEnv();
  const tokens = new Command("tokens")
    .description("issue, list and revoke the bearer tokens the daemon accepts (a running daemon sees changes at once)")
    .option("--data-dir <dir>", "the daemon's data dir, which holds tokens.json (env NANOLLM_DATA_DIR)", env.dataDir);
  // The tokens file is the daemon's (run on its machine): its code loads only for these commands.
  const file = async (cmd: Command) => {
    const { TokenFile } = await loadDaemon("tokens");
    return new TokenFile(path.join((cmd.optsWithGlobals() as { dataDir: string }).dataDir, "tokens.json"));
  };
  tokens
    .command("add <name>")
    .description("issue a token for NAME (the identity its sessions belong to) and print it once")
    .option("--admin", "the token sees and manages every session, and may load models by path")
    .action(async (name: string, opts: { admin?: boolean }, cmd: Command) => {
      const token = (await file(cmd)).add(name, opts.admin === true);
      process.stderr.write(`token for ${name}${opts.admin ? " (admin)" : ""}; it is shown only this once, only its hash is kept:\n`);
      console.log(token);
    });
  tokens
    .command("list", { isDefault: true })
    .description("list the issued tokens (names only; the tokens themselves are not kept)")
    .action(async (_opts: object, cmd: Command) => {
      const entries = (await file(cmd)).entries();
      if (entries.length === 0) console.log("no tokens (the daemon needs none on loopback)");
      for (const t of entries) console.log(`${t.name}${t.admin ? "  admin" : ""}  issued ${new Date(t.createdAt).toISOString()}`);
    });
  tokens
    .command("revoke <name>")
    .description("revoke NAME's token; the daemon refuses it from the next call on")
    .action(async (name: string, _opts: object, cmd: Command) => {
      if (!(await file(cmd)).revoke(name)) throw new NanoError("NOT_FOUND", `There is no token named "${name}"; see \`nanollm tokens list\`.`);
      console.log(`revoked ${name}`);
    });
  return tokens;
}
