// Makes the PEM files `DYNA_MODE=https` needs (what the original's `cert.sh` did), with the `openssl`
// command: a private CA, kept and reused so every node of a cluster is signed by the same one, and a node
// certificate for the given hosts. rustls (Deno's TLS) refuses a bare self-signed certificate as a CA used
// as an end entity, so the node certificate is a leaf (`CA:FALSE`, `serverAuth`) signed by the CA, and
// `cert.pem` holds the chain: the leaf, then the CA. Peers trust the CA found at the end of that chain.
//
// Usage: deno task cert [--dir cert] [--hosts 127.0.0.1,localhost,node1.example] [--days 825]  (--help: all
// flags, meanings and defaults). Writes DIR/ca.pem and DIR/ca-key.pem (only when absent), then DIR/cert.pem
// and DIR/key.pem (replaced). Keys are written 0600. The CA is valid for 10 years (or --days, when longer);
// the node for --days. Exit 0 when written, 1 when openssl fails, 64 for a command line it cannot use.
import { type CommandSpec, type Invocation, parseCommand, runTool, UsageError } from "./cli.ts";

/** Options of {@linkcode createCertificates}. */
export interface CertOptions {
  /** Directory of the files. @default "cert" */
  dir: string;
  /** IP addresses and DNS names the node certificate is valid for (its subjectAltName). */
  hosts: string[];
  /** Validity of the node certificate, in days. @default 825 (the longest browsers accept) */
  days: number;
}

/** What {@linkcode createCertificates} wrote. */
export interface CertResult {
  caPath: string;
  caKeyPath: string;
  certPath: string;
  keyPath: string;
  /** False when an existing CA in the directory signed the node certificate. */
  caCreated: boolean;
}

/** `openssl` could not be run or refused an input; the message says which step and why. */
export class CertError extends Error {
  override name = "CertError";
}

const defaultOptions: CertOptions = { dir: "cert", hosts: ["127.0.0.1", "::1", "localhost"], days: 825 };
const caDaysMin = 3650;
const daysMax = 36500;
const hostsMax = 100;

const certCommand: CommandSpec = {
  usage: "deno task cert [--dir DIR] [--hosts HOST,HOST,...] [--days N]",
  summary: [
    "Writes a private CA (DIR/ca.pem, DIR/ca-key.pem; kept and reused when both exist, so every node of a",
    "cluster is signed by the same one) and a node certificate chain signed by it (DIR/cert.pem, the node",
    "certificate then the CA; DIR/key.pem), with the openssl command. Keys are written 0600.",
  ],
  flags: {
    dir: { type: "string", valueName: "DIR", meaning: "directory of the four files", defaultText: "cert" },
    hosts: {
      type: "string",
      valueName: "HOST,...",
      meaning: `IP addresses and DNS names the node certificate is for, comma-separated, 1 to ${hostsMax}`,
      defaultText: defaultOptions.hosts.join(","),
    },
    days: {
      type: "string",
      valueName: "N",
      meaning: `validity of the node certificate in days, 1 to ${daysMax} (the CA's: at least ${caDaysMin})`,
      defaultText: `${defaultOptions.days} (the longest browsers accept)`,
    },
  },
};

/**
 * The options in `args` over the defaults, or the help text (`--help`).
 *
 * @throws {UsageError} naming the flag that is unknown, lacks a value, or has one out of range.
 */
export function parseCertArgs(args: readonly string[]): Invocation<CertOptions> {
  const parsed = parseCommand(certCommand, args);
  if (parsed.kind === "help") return parsed;
  const { dir, hosts, days } = parsed.values;
  const options = { ...defaultOptions };
  if (typeof dir === "string") {
    if (dir === "") throw new UsageError("--dir must name a directory; got an empty value");
    options.dir = dir;
  }
  if (typeof hosts === "string") options.hosts = hosts.split(",").map((host) => host.trim());
  if (typeof days === "string") {
    if (!/^[0-9]{1,9}$/.test(days) || Number(days) < 1 || Number(days) > daysMax) {
      throw new UsageError(`--days must be a whole number from 1 to ${daysMax}; got "${days}"`);
    }
    options.days = Number(days);
  }
  try {
    subjectAltNameOf(options.hosts); // validates the hosts
  } catch (error) {
    if (!(error instanceof CertError)) throw error;
    throw new UsageError(error.message, { cause: error });
  }
  return { kind: "run", options };
}

/** The `subjectAltName` value for `hosts`: `IP:` for addresses, `DNS:` for names. @throws {CertError} */
export function subjectAltNameOf(hosts: readonly string[]): string {
  if (hosts.length === 0 || hosts.length > hostsMax) {
    throw new CertError(`--hosts must list 1 to ${hostsMax} hosts; got ${hosts.length}`);
  }
  return hosts.map((host) => {
    if (isIpv4(host) || isIpv6(host)) return `IP:${host}`;
    if (isDnsName(host)) return `DNS:${host}`;
    throw new CertError(`--hosts: "${host}" is neither an IP address nor a DNS name`);
  }).join(", ");
}

function isIpv4(host: string): boolean {
  const parts = host.split(".");
  return parts.length === 4 &&
    parts.every((part) => /^(0|[1-9][0-9]{0,2})$/.test(part) && Number(part) < 256);
}

function isIpv6(host: string): boolean {
  // Loose by design: hex groups and colons only; openssl rejects what is not an address.
  return host.includes(":") && /^[0-9a-fA-F:.]{2,45}$/.test(host);
}

function isDnsName(host: string): boolean {
  if (/^[0-9.]+$/.test(host)) return false; // looks like an IPv4 address, but is not one
  const label = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
  return host.length <= 253 && new RegExp(`^(\\*\\.)?${label}(\\.${label})*$`).test(host);
}

/** The openssl config: a CA section and a node section (the SAN is validated, so it cannot inject). */
function opensslConfigText(hosts: readonly string[]): string {
  return [
    "[req]",
    "distinguished_name = dn",
    "prompt = no",
    "[dn]",
    "CN = dynarust",
    "[v3_ca]",
    "basicConstraints = critical, CA:TRUE",
    "keyUsage = critical, keyCertSign, cRLSign",
    "subjectKeyIdentifier = hash",
    "[v3_node]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature, keyEncipherment",
    "extendedKeyUsage = serverAuth, clientAuth",
    `subjectAltName = ${subjectAltNameOf(hosts)}`,
    "subjectKeyIdentifier = hash",
    "authorityKeyIdentifier = keyid, issuer",
    "",
  ].join("\n");
}

/** Runs `openssl` with `args`. @throws {CertError} when it is missing or fails. */
async function openssl(step: string, args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new CertError(
        "the openssl command is not installed (or not on PATH): install it, e.g. `apt-get install openssl`",
        { cause: error },
      );
    }
    throw new CertError(`cannot run openssl to ${step}`, { cause: error });
  }
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim();
    throw new CertError(`openssl failed to ${step} (exit ${output.code}): ${stderr}`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Creates the CA in `work` unless `dir` has one; returns whether it made one. @throws {CertError} */
async function ensureCa(options: { result: CertResult; work: string; days: number }): Promise<boolean> {
  const { result, work } = options;
  const caExists = await exists(result.caPath);
  const caKeyExists = await exists(result.caKeyPath);
  if (caExists && caKeyExists) return false;
  if (caExists || caKeyExists) {
    const [found, missing] = caExists ? [result.caPath, result.caKeyPath] : [result.caKeyPath, result.caPath];
    throw new CertError(`${found} exists but ${missing} does not: restore it, or remove both for a new CA`);
  }
  await generateKey(`${work}/ca-key.pem`);
  await openssl("create the CA certificate", [
    ...["req", "-x509", "-new", "-key", `${work}/ca-key.pem`, "-config", `${work}/openssl.cnf`],
    ...[
      "-extensions",
      "v3_ca",
      "-subj",
      "/CN=dynarust CA",
      "-days",
      String(Math.max(options.days, caDaysMin)),
    ],
    ...["-sha256", "-out", `${work}/ca.pem`],
  ]);
  await Deno.rename(`${work}/ca-key.pem`, result.caKeyPath);
  await Deno.rename(`${work}/ca.pem`, result.caPath);
  return true;
}

/** An ECDSA P-256 private key (PKCS#8 PEM) at `path`, mode 0600. */
async function generateKey(path: string): Promise<void> {
  await openssl("generate a private key", [
    ...["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path],
  ]);
  await Deno.chmod(path, 0o600);
}

/** Signs a node certificate for `options.hosts` with the CA and writes the chain and key. */
async function createNode(options: CertOptions & { result: CertResult; work: string }): Promise<void> {
  const { result, work } = options;
  await generateKey(`${work}/key.pem`);
  await openssl("create the certificate request", [
    ...["req", "-new", "-key", `${work}/key.pem`, "-config", `${work}/openssl.cnf`],
    ...["-subj", `/CN=${options.hosts[0]}`, "-out", `${work}/node.csr`],
  ]);
  const serial = `0x${crypto.getRandomValues(new Uint8Array(16)).toHex().replace(/^./, "1")}`;
  await openssl("sign the node certificate with the CA", [
    ...["x509", "-req", "-in", `${work}/node.csr`, "-CA", result.caPath, "-CAkey", result.caKeyPath],
    ...["-set_serial", serial, "-days", String(options.days), "-sha256"],
    ...["-extfile", `${work}/openssl.cnf`, "-extensions", "v3_node", "-out", `${work}/node.pem`],
  ]);
  // Catches a CA key that does not match ca.pem, or a CA that is no longer valid.
  await openssl("verify the node certificate against the CA", [
    ...["verify", "-CAfile", result.caPath, "-purpose", "sslserver", `${work}/node.pem`],
  ]);
  const chain = (await Deno.readTextFile(`${work}/node.pem`)).trimEnd() + "\n" +
    (await Deno.readTextFile(result.caPath)).trimEnd() + "\n";
  await Deno.writeTextFile(`${work}/cert.pem`, chain);
  await Deno.rename(`${work}/key.pem`, result.keyPath);
  await Deno.rename(`${work}/cert.pem`, result.certPath);
}

/**
 * Writes `ca.pem`/`ca-key.pem` into `options.dir` unless both exist, then a fresh node key `key.pem` and
 * `cert.pem` (the node certificate followed by the CA certificate). Files appear whole (renamed into place).
 *
 * @throws {CertError} when openssl is missing or fails, or only half of a CA is present.
 */
export async function createCertificates(options: CertOptions): Promise<CertResult> {
  await Deno.mkdir(options.dir, { recursive: true });
  const dir = options.dir.replace(/\/+$/, "") || "/";
  const result: CertResult = {
    caPath: `${dir}/ca.pem`,
    caKeyPath: `${dir}/ca-key.pem`,
    certPath: `${dir}/cert.pem`,
    keyPath: `${dir}/key.pem`,
    caCreated: false,
  };
  // In `dir`, so the renames stay on one file system; makeTempDir creates it 0700.
  const work = await Deno.makeTempDir({ dir, prefix: ".cert_work_" });
  try {
    await Deno.writeTextFile(`${work}/openssl.cnf`, opensslConfigText(options.hosts));
    result.caCreated = await ensureCa({ result, work, days: options.days });
    await createNode({ ...options, result, work });
  } finally {
    await Deno.remove(work, { recursive: true });
  }
  return result;
}

/** The lines printed after a run: what was written and how to use it. */
export function reportLines(options: CertOptions, result: CertResult): string[] {
  const { caPath, caKeyPath, certPath, keyPath } = result;
  const hosts = options.hosts.join(", ");
  return [
    result.caCreated
      ? `wrote ${caPath} (new CA certificate) and ${caKeyPath} (CA key, 0600: keep it secret)`
      : `reused the CA in ${caPath} and ${caKeyPath}`,
    `wrote ${certPath} (certificate for ${hosts}, valid ${options.days} days, followed by the CA)`,
    `wrote ${keyPath} (its key, 0600)`,
    "",
    "Serve over https:",
    `  DYNA_MODE=https DYNA_CERT=${certPath} DYNA_KEY=${keyPath} deno run -A main.ts 127.0.0.1:6660`,
    "Clients trust the CA, not the node certificate:",
    `  curl --cacert ${caPath} https://127.0.0.1:6660/health`,
    "Every node of a cluster needs a certificate from the same CA: run this again with that node's --hosts",
    `(the CA in ${options.dir} is reused), then copy cert.pem and key.pem to it. Never copy ca-key.pem.`,
  ];
}

/** Makes the files and prints what it wrote; a failing openssl step exits 1 with its reason. */
async function runCert(options: CertOptions): Promise<number> {
  try {
    const result = await createCertificates(options);
    for (const line of reportLines(options, result)) console.log(line);
    return 0;
  } catch (error) {
    if (!(error instanceof CertError)) throw error;
    console.error(`cert: ${error.message}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await runTool({ name: "cert", args: Deno.args, parse: parseCertArgs, run: runCert }));
}
