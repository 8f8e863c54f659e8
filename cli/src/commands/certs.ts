import { Command } from "commander";

/** `nanollm certs init DIR`: a private CA, a server certificate and client certificates for a LAN. */
export function certsCommand(): Command {
  const certs = new Command("certs").description("make TLS certificates for serving over a LAN");
  certs
    .command("init <dir>")
    .description("make a CA in DIR (kept and reused), a server certificate (server.pem, server-key.pem) and client certificates")
    .option("--name <host|ip>", "a host name or IP clients connect to (repeat); given, the server certificate is made again for these names (default, the first time: this host's name, localhost and its addresses)", (v: string, acc: string[]) => [...acc, v], [])
    .option("--client <name[:admin]>", "issue client-NAME.pem for mutual TLS; its CN is the identity (repeat)", (v: string, acc: string[]) => [...acc, v], [])
    .action(async (dir: string, opts: { name: string[]; client: string[] }) => {
      const { makeCerts } = await import("../certs/makeCerts.js");
      const files = await makeCerts(dir, { names: opts.name, clients: opts.client });
      for (const file of files) console.log(file);
      process.stderr.write(
        `serve with --tls-cert ${dir}/server.pem --tls-key ${dir}/server-key.pem${opts.client.length ? ` --tls-client-ca ${dir}/ca.pem` : ""}; clients pass --tls-ca ${dir}/ca.pem (copy ca.pem to them; never ca-key.pem)\n`,
      );
    });
  return certs;
}
