// @peculiar/x509 resolves its ASN.1 codecs through tsyringe, which needs the Reflect metadata API.
import "reflect-metadata";
import fs from "node:fs";
import { isIP } from "node:net";
import os from "node:os";
import path from "node:path";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { NanoError } from "@nanollm/shared";

const subtle = webcrypto.subtle;
// ECDSA P-256: small keys made in milliseconds, accepted by every TLS stack gRPC uses.
const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const YEAR = 365 * 24 * 3600 * 1000;
x509.cryptoProvider.set(webcrypto as never);
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

export interface CertRequest {
  /** Host names and IP addresses clients will connect to (the server certificate's names); none keeps an existing server certificate. */
  names: string[];
  /** Common names of client certificates to issue; "NAME:admin" marks an admin (OU=admin). */
  clients: string[];
}

/**
 * A private CA in `dir` (made once, reused after), a server certificate for `names` and a client
 * certificate per name. Keys are written 0600. Returns the files written.
 */
export async function makeCerts(dir: string, req: CertRequest): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const out = (name: string, text: string, secret = false) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text, { mode: secret ? 0o600 : 0o644 });
    if (secret) fs.chmodSync(file, 0o600);
    written.push(file);
  };
  const ca = await loadOrMakeCa(dir, out);
  const serverFile = path.join(dir, "server.pem");
  if (req.names.length > 0 || !fs.existsSync(serverFile)) {
    const names = req.names.length > 0 ? req.names : defaultNames();
    const san = names.map((n) => ({ type: isIP(n) ? ("ip" as const) : ("dns" as const), value: n }));
    const { cert, key } = await issue(ca, `CN=${names[0]}`, [x509.ExtendedKeyUsage.serverAuth], [new x509.SubjectAlternativeNameExtension(san)]);
    out("server.pem", cert);
    out("server-key.pem", key, true);
  }
  for (const spec of req.clients) {
    const [name, role] = spec.split(":");
    if (!name || !/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(name) || (role !== undefined && role !== "admin")) {
      throw new NanoError("INVALID_ARGUMENT", `"${spec}" is not a client name; use NAME or NAME:admin with letters, digits, '.', '_', '@' or '-'.`);
    }
    const { cert, key } = await issue(ca, `CN=${name}${role ? ", OU=admin" : ""}`, [x509.ExtendedKeyUsage.clientAuth], []);
    out(`client-${name}.pem`, cert);
    out(`client-${name}-key.pem`, key, true);
  }
  return written;
}

interface Ca {
  cert: x509.X509Certificate;
  key: CryptoKey;
}

async function loadOrMakeCa(dir: string, out: (name: string, text: string, secret?: boolean) => void): Promise<Ca> {
  const certFile = path.join(dir, "ca.pem");
  const keyFile = path.join(dir, "ca-key.pem");
  if (fs.existsSync(certFile) && fs.existsSync(keyFile)) {
    const cert = new x509.X509Certificate(fs.readFileSync(certFile, "utf8"));
    const der = x509.PemConverter.decodeFirst(fs.readFileSync(keyFile, "utf8"));
    return { cert, key: (await subtle.importKey("pkcs8", der, ALG, false, ["sign"])) as unknown as CryptoKey };
  }
  const keys = (await subtle.generateKey(ALG, true, ["sign", "verify"])) as unknown as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: "CN=nanollm CA",
    keys,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 10 * YEAR),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  out("ca.pem", cert.toString("pem") + "\n");
  out("ca-key.pem", await pemKey(keys.privateKey), true);
  return { cert, key: keys.privateKey };
}

async function issue(ca: Ca, subject: string, usages: x509.ExtendedKeyUsage[], extra: x509.Extension[]): Promise<{ cert: string; key: string }> {
  const keys = (await subtle.generateKey(ALG, true, ["sign", "verify"])) as unknown as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    subject,
    issuer: ca.cert.subject,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 2 * YEAR),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension(usages),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
      ...extra,
    ],
  });
  return { cert: cert.toString("pem") + "\n", key: await pemKey(keys.privateKey) };
}

async function pemKey(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await subtle.exportKey("pkcs8", key ), "PRIVATE KEY") + "\n";
}

/** This host's name, localhost, and every address of its interfaces. */
function defaultNames(): string[] {
  const addresses = Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address.split("%")[0]!));
  return [...new Set([os.hostname(), "localhost", "127.0.0.1", "::1", ...addresses])];
}
