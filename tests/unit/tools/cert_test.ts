// Goal: tools/cert.ts writes a CA (kept and reused) and a node certificate chain that rustls accepts: a
// leaf with the hosts in its SAN, CA:FALSE and serverAuth, followed by the CA; keys 0600.
// Method: run the script with Deno.Command into a temp dir twice, and read the files back with openssl.
// The argument parsing is tested in-process. Without openssl the runs are ignored and the reason printed.
import assert from "node:assert/strict";
import { parseCertArgs, subjectAltNameOf } from "../../../tools/cert.ts";
import { UsageError } from "../../../tools/cli.ts";

const scriptPath = new URL("../../../tools/cert.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

async function opensslVersion(): Promise<string | undefined> {
  try {
    const output = await new Deno.Command("openssl", { args: ["version"], stdout: "piped" }).output();
    return output.success ? decoder.decode(output.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

const hasOpenssl = (await opensslVersion()) !== undefined;
if (!hasOpenssl) {
  console.log("cert_test: runs of tools/cert.ts skipped: the openssl command is not installed");
}

async function runCert(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", scriptPath, ...args],
    env: options.env ?? {},
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

async function opensslText(args: string[]): Promise<string> {
  const output = await new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" }).output();
  assert.ok(output.success, decoder.decode(output.stderr));
  return decoder.decode(output.stdout);
}

/** The PEM blocks of a file, in order. */
function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
}

async function modeOf(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

Deno.test({
  name: "cert.ts writes a CA and a node chain, and a second run reuses the CA",
  ignore: !hasOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_cert_" });
    try {
      const first = await runCert(["--dir", dir, "--hosts", "127.0.0.1,localhost,node1.example"]);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, new RegExp(`wrote ${dir}/ca\\.pem \\(new CA certificate\\)`));
      assert.match(
        first.stdout,
        new RegExp(`DYNA_MODE=https DYNA_CERT=${dir}/cert\\.pem DYNA_KEY=${dir}/key\\.pem`),
      );
      assert.match(first.stdout, new RegExp(`curl --cacert ${dir}/ca\\.pem https://`));
      const names = (await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name).sort();
      assert.deepEqual(names, ["ca-key.pem", "ca.pem", "cert.pem", "key.pem"], "no work files are left");
      assert.equal(await modeOf(`${dir}/key.pem`), 0o600);
      assert.equal(await modeOf(`${dir}/ca-key.pem`), 0o600);

      const ca = await Deno.readTextFile(`${dir}/ca.pem`);
      const chain = pemBlocks(await Deno.readTextFile(`${dir}/cert.pem`));
      assert.equal(chain.length, 2, "cert.pem is the node certificate, then the CA");
      assert.equal(chain[1], ca.trim());
      const caText = await opensslText(["x509", "-in", `${dir}/ca.pem`, "-noout", "-text"]);
      assert.match(caText, /Basic Constraints: critical\s+CA:TRUE/);
      await Deno.writeTextFile(`${dir}/leaf.pem`, chain[0]!);
      const leafText = await opensslText(["x509", "-in", `${dir}/leaf.pem`, "-noout", "-text"]);
      assert.match(leafText, /Basic Constraints: critical\s+CA:FALSE/);
      assert.match(leafText, /Extended Key Usage:\s+TLS Web Server Authentication/);
      assert.match(leafText, /IP Address:127\.0\.0\.1, DNS:localhost, DNS:node1\.example/);
      assert.match(leafText, /Issuer: CN\s?=\s?dynarust CA/);
      const verified = await opensslText(["verify", "-CAfile", `${dir}/ca.pem`, `${dir}/leaf.pem`]);
      assert.match(verified, /: OK/);
      await Deno.remove(`${dir}/leaf.pem`);

      const second = await runCert(["--dir", dir, "--hosts", "10.0.0.2,node2.example", "--days", "30"]);
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stdout, /reused the CA/);
      assert.equal(await Deno.readTextFile(`${dir}/ca.pem`), ca, "the CA is kept");
      const secondChain = pemBlocks(await Deno.readTextFile(`${dir}/cert.pem`));
      assert.notEqual(secondChain[0], chain[0]);
      assert.equal(secondChain[1], ca.trim());
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "cert.ts refuses half a CA instead of replacing it",
  ignore: !hasOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_cert_" });
    try {
      await Deno.writeTextFile(`${dir}/ca.pem`, "not a real CA");
      const result = await runCert(["--dir", dir]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /ca\.pem exists but .*ca-key\.pem does not/);
      assert.equal(await Deno.readTextFile(`${dir}/ca.pem`), "not a real CA");
      const names = (await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name);
      assert.deepEqual(names, ["ca.pem"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("cert.ts says openssl is missing when it is not on PATH", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dynarust_cert_" });
  try {
    const result = await runCert(["--dir", dir], { env: { PATH: dir } });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /the openssl command is not installed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseCertArgs() applies defaults and validates --dir, --hosts and --days", () => {
  const defaults = { dir: "cert", hosts: ["127.0.0.1", "::1", "localhost"], days: 825 };
  assert.deepEqual(parseCertArgs([]), { kind: "run", options: defaults });
  const options = { dir: "x", hosts: ["10.0.0.1", "a.example"], days: 36500 };
  assert.deepEqual(parseCertArgs(["--hosts", "10.0.0.1, a.example", "--days", "36500", "--dir", "x"]), {
    kind: "run",
    options,
  });
  assert.deepEqual(parseCertArgs(["--hosts=10.0.0.1, a.example", "--days=36500", "--dir=x"]), {
    kind: "run",
    options,
  });
  assert.deepEqual(parseCertArgs(["--days", "1"]), { kind: "run", options: { ...defaults, days: 1 } });
  assert.equal(parseCertArgs(["--help"]).kind, "help");
  const refusals = [
    [["--days", "36501"], /^--days must be a whole number from 1 to 36500; got "36501"$/],
    [["--days=0"], /--days must be a whole number from 1 to 36500; got "0"/],
    [["--days", "1.5"], /got "1\.5"/],
    [["--days", "-3"], /'--days' argument is ambiguous/],
    [["--dir"], /'--dir <value>' argument missing/],
    [["--dir="], /--dir must name a directory; got an empty value/],
    [["--out", "x"], /^unknown flag --out; the flags are --dir, --hosts, --days, --help$/],
    [["--hosts", ""], /neither an IP address nor a DNS name/],
    [["--hosts=a,,b"], /neither an IP address nor a DNS name/],
  ] as const;
  for (const [args, message] of refusals) {
    assert.throws(() => parseCertArgs(args), (error) => {
      assert.ok(error instanceof UsageError, String(error));
      assert.match(error.message, message);
      return true;
    }, args.join(" "));
  }
});

Deno.test(
  "cert.ts --help lists every flag with its meaning and default, exits 0 and writes nothing",
  async () => {
    const cwd = await Deno.makeTempDir({ prefix: "dynarust_cert_" });
    try {
      for (const flag of ["--help", "-h"]) {
        const result = await runCert([flag, "--days", "30"], { cwd });
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stderr, "");
        assert.match(
          result.stdout,
          /^usage: deno task cert \[--dir DIR\] \[--hosts HOST,HOST,\.\.\.\] \[--days N\]/,
        );
        assert.match(result.stdout, /--dir DIR +directory of the four files\n +default: cert\n/);
        assert.match(
          result.stdout,
          new RegExp(
            /--hosts HOST,\.\.\. +IP addresses and DNS names .*1 to 100\n/.source +
              / +default: 127\.0\.0\.1,::1,localhost\n/.source,
          ),
        );
        assert.match(result.stdout, /--days N +validity .* 1 to 36500 .*\n +default: 825 /);
        assert.match(result.stdout, /-h, --help +print this help and exit/);
      }
      assert.deepEqual(await Array.fromAsync(Deno.readDir(cwd)), [], "no cert/ directory");
    } finally {
      await Deno.remove(cwd, { recursive: true });
    }
  },
);

Deno.test(
  "cert.ts refuses an unknown flag or a bad value with exit 64, naming it, and writes nothing",
  async () => {
    const cwd = await Deno.makeTempDir({ prefix: "dynarust_cert_" });
    try {
      const cases = [
        [
          ["--out", "x"],
          /^cert: unknown flag --out; the flags are --dir, --hosts, --days, --help \(see --help\)\n$/,
        ],
        [["--days=0"], /^cert: --days must be a whole number from 1 to 36500; got "0" \(see --help\)\n$/],
        [["--hosts", "a b"], /^cert: --hosts: "a b" is neither an IP address nor a DNS name/],
      ] as const;
      for (const [args, message] of cases) {
        const result = await runCert([...args], { cwd });
        assert.equal(result.code, 64, result.stderr);
        assert.equal(result.stdout, "");
        assert.match(result.stderr, message);
      }
      assert.deepEqual(await Array.fromAsync(Deno.readDir(cwd)), [], "no cert/ directory");
    } finally {
      await Deno.remove(cwd, { recursive: true });
    }
  },
);

Deno.test({
  name: "cert.ts takes --dir=, --hosts= and --days= as it takes them with a space",
  ignore: !hasOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_cert_" });
    try {
      const result = await runCert([`--dir=${dir}`, "--hosts=10.0.0.3,node3.example", "--days=30"]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /certificate for 10\.0\.0\.3, node3\.example, valid 30 days/);
      const leaf = pemBlocks(await Deno.readTextFile(`${dir}/cert.pem`))[0]!;
      await Deno.writeTextFile(`${dir}/leaf.pem`, leaf);
      const leafText = await opensslText(["x509", "-in", `${dir}/leaf.pem`, "-noout", "-text"]);
      assert.match(leafText, /IP Address:10\.0\.0\.3, DNS:node3\.example/);
      const dates = await opensslText(["x509", "-in", `${dir}/leaf.pem`, "-noout", "-startdate", "-enddate"]);
      const [notBefore, notAfter] = [/notBefore=(.+)/, /notAfter=(.+)/].map((pattern) =>
        Date.parse(pattern.exec(dates)![1]!)
      );
      assert.equal((notAfter! - notBefore!) / 86_400_000, 30, dates);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("subjectAltNameOf() names addresses IP: and names DNS:, and refuses anything else", () => {
  assert.equal(
    subjectAltNameOf(["127.0.0.1", "::1", "localhost", "*.nodes.example", "fe80::1"]),
    "IP:127.0.0.1, IP:::1, DNS:localhost, DNS:*.nodes.example, IP:fe80::1",
  );
  for (const bad of ["a,b", "host\nCN=x", "-bad.example", "a..b", "256.1.1.1", "10.0.0", "x".repeat(64)]) {
    assert.throws(() => subjectAltNameOf([bad]), /neither an IP address nor a DNS name/, bad);
  }
  assert.throws(() => subjectAltNameOf([]), /1 to 100 hosts; got 0/);
  assert.equal(
    subjectAltNameOf(Array.from({ length: 100 }, (_, index) => `n${index}`)).split(", ").length,
    100,
  );
  assert.throws(() => subjectAltNameOf(Array.from({ length: 101 }, (_, index) => `n${index}`)), /got 101/);
});
