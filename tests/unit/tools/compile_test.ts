// Goal: `deno task compile` says what to do when Deno's runtime cannot be had (no network, a DENORT_BIN that
// names no file) instead of Deno's raw error and backtrace, and leaves other failures to Deno's message.
// Method: the advice on the two messages deno compile 2.9.6 printed on this machine (copied verbatim), then
// the task's script run for real with DENORT_BIN naming no file.
import assert from "node:assert/strict";
import { failureOf, parseCompileArgs, runtimeAdvice, unavailableExitCode } from "../../../tools/compile.ts";

const noNetwork = `\x1b[0m\x1b[32mCompile\x1b[0m main.ts to ../../tmp/xx
\x1b[0m\x1b[32mDownload\x1b[0m https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip
\x1b[0m\x1b[1m\x1b[31merror\x1b[0m: Writing deno compile executable to temporary file \
'/tmp/xx.tmp-1429c6a154412ca3'

Caused by:
    0: Setting up base binary.
    1: error sending request for url \
(https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): \
client error (Connect): \
dns error: failed to lookup address information: Name or service not known
    2: client error (Connect)

Stack backtrace:
   0: <unknown>
`;

const missingDenort = `\x1b[0m\x1b[32mCompile\x1b[0m main.ts to ../../tmp/xx
\x1b[0m\x1b[1m\x1b[31merror\x1b[0m: Writing deno compile executable to temporary file \
'/tmp/xx.tmp-c370ca82c557b1a3'

Caused by:
    0: Could not find denort at '/nonexistent/denort'
    1: No such file or directory (os error 2)

Stack backtrace:
   0: <unknown>
`;

Deno.test("runtimeAdvice() names the failed download and DENORT_BIN, without the backtrace", () => {
  const advice = runtimeAdvice(noNetwork, undefined);
  assert.ok(advice !== undefined);
  assert.match(advice, /could not download Deno's runtime \(denort\)/);
  assert.match(advice, /dns error: failed to lookup address information/);
  assert.match(advice, /DENORT_BIN=\$PWD\/denort deno task compile/);
  assert.doesNotMatch(advice, /backtrace|<unknown>/);
  assert.ok(!advice.includes("\x1b"), "no colour codes");
  assert.equal(
    failureOf(noNetwork),
    "dns error: failed to lookup address information: Name or service not known",
  );
});

Deno.test("runtimeAdvice() names a DENORT_BIN that names no file", () => {
  const advice = runtimeAdvice(missingDenort, "/nonexistent/denort");
  assert.ok(advice !== undefined);
  assert.match(advice, /runtime DENORT_BIN names \(\/nonexistent\/denort\)/);
  assert.match(advice, /Could not find denort at '\/nonexistent\/denort'/);
});

Deno.test("runtimeAdvice() leaves a failure that is not about the runtime to Deno's own message", () => {
  const typeError =
    "\x1b[0m\x1b[1m\x1b[31merror\x1b[0m: TS2304 [ERROR]: Cannot find name 'x'.\n    at main.ts:1:1";
  assert.equal(runtimeAdvice(typeError, undefined), undefined);
  assert.equal(runtimeAdvice(typeError, "/opt/denort"), undefined);
});

Deno.test("parseCompileArgs() takes --output in both spellings, and refuses what it cannot use", () => {
  assert.deepEqual(parseCompileArgs([]), { kind: "run", options: { output: "dynarust" } });
  assert.deepEqual(parseCompileArgs(["--output=/tmp/d"]), { kind: "run", options: { output: "/tmp/d" } });
  assert.deepEqual(parseCompileArgs(["--output", "/tmp/d"]), { kind: "run", options: { output: "/tmp/d" } });
  assert.equal(parseCompileArgs(["--help"]).kind, "help");
  assert.throws(() => parseCompileArgs(["--out", "x"]), /unknown flag --out/);
  assert.throws(() => parseCompileArgs(["--output="]), /--output must name a file/);
});

Deno.test("the compile task, run with a DENORT_BIN that names no file, says so and exits 69", async () => {
  const dir = await Deno.makeTempDir({ prefix: "compile_advice_" });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tools/compile.ts", "--output", `${dir}/dynarust`],
      cwd: new URL("../../../", import.meta.url).pathname,
      env: { DENORT_BIN: `${dir}/no-denort` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, unavailableExitCode, stderr);
    assert.match(
      stderr,
      new RegExp(`^compile: deno compile could not use the runtime DENORT_BIN names \\(${dir}`),
    );
    assert.doesNotMatch(stderr, /Stack backtrace/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
