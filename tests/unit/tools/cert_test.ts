// Goal: tools/cert.ts writes a CA (kept and reused) and a node certificate chain that rustls accepts: a
// leaf with the hosts in its SAN, CA:FALSE and serverAuth, followed by the CA; keys 0600.
// Method: run the script with Deno.Command into a temp dir twice, and read the files back with openssl.
// The argument parsing is tested in-process. Without openssl the runs are ignored and the reason printed.
import assert from "node:assert/strict";
import { CertError, parseCertArgs, subjectAltNameOf } from "../../../tools/cert.ts";

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

async function runCert(args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", scriptPath, ...args],
    env,
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
    const result = await runCert(["--dir", dir], { PATH: dir });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /the openssl command is not installed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseCertArgs() applies defaults and validates --dir, --hosts and --days", () => {
  assert.deepEqual(parseCertArgs([]), { dir: "cert", hosts: ["127.0.0.1", "::1", "localhost"], days: 825 });
  assert.deepEqual(parseCertArgs(["--hosts", "10.0.0.1, a.example", "--days", "36500", "--dir", "x"]), {
    dir: "x",
    hosts: ["10.0.0.1", "a.example"],
    days: 36500,
  });
  assert.throws(() => parseCertArgs(["--days", "36501"]), /--days must be 1 to 36500; got 36501/);
  assert.throws(() => parseCertArgs(["--days", "0"]), CertError);
  assert.throws(() => parseCertArgs(["--days", "-3"]), /usage/);
  assert.throws(() => parseCertArgs(["--dir"]), /usage/);
  assert.throws(() => parseCertArgs(["--out", "x"]), /usage/);
  assert.throws(() => parseCertArgs(["--hosts", ""]), /neither an IP address nor a DNS name/);
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
