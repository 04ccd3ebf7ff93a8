// Goal: the container image (Dockerfile, .dockerignore) builds from a context that holds what the build
// needs, the key module included, and nothing else; it runs the node as uid 65532 with /data writable and
// reports healthy through `dynarust health` (issue 21 item 5). A node that starts serves only once its
// data dir passed a write probe, so "healthy" also says /data is writable by uid 65532.
// Method: the Dockerfile is checked by dockerfile-utils (the validator of VS Code's Docker support); the
// context is computed with @balena/dockerignore (Docker's own matching rules) over this checkout's files and
// the data dirs a developer's checkout holds; the build stage's `test` and `deno` steps run on a copy of that
// context. With a reachable Docker daemon the image is built and run for real; without one (or without
// network for the base images) that test says it was skipped and why.
import assert from "node:assert/strict";
import dockerignoreModule from "@balena/dockerignore";
import { validate } from "dockerfile-utils";
import { waitFor } from "../../helpers/wait_for.ts";
import { unavailableExitCode } from "../../../tools/compile.ts";

// The package is CommonJS (`module.exports = factory`) while its types declare a default export: the default
// import is the factory itself.
const ignore = dockerignoreModule as unknown as typeof dockerignoreModule.default;
const root = new URL("../../../", import.meta.url).pathname;
const dockerfile = await Deno.readTextFile(`${root}Dockerfile`);
const dockerignore = await Deno.readTextFile(`${root}.dockerignore`);

/** The Dockerfile's instructions of the build stage (before the second FROM), continuation lines joined. */
function buildStage(text: string): Array<{ keyword: string; args: string }> {
  const joined = text.split("\n").filter((line) => !line.trimStart().startsWith("#")).join("\n")
    .replaceAll(/\\\n/g, " ");
  const instructions = joined.split("\n").map((line) => line.trim()).filter((line) => line !== "")
    .map((line) => {
      const space = line.indexOf(" ");
      return { keyword: line.slice(0, space).toUpperCase(), args: line.slice(space + 1).trim() };
    });
  const stages = instructions.map((instruction, index) => instruction.keyword === "FROM" ? index : -1)
    .filter((index) => index >= 0);
  return instructions.slice(stages[0]! + 1, stages[1]);
}

/** Every file under `dir` (relative to it), not descending into `.git` (listed as itself). */
async function filesUnder(dir: string, prefix = ""): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(`${dir}/${prefix}`)) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory && entry.name !== ".git") files.push(...await filesUnder(dir, `${path}/`));
    else files.push(path);
  }
  return files;
}

/** Paths a developer's checkout holds besides the repository's files: data dirs, certificates, builds. */
const localPaths = [
  "data/storage.db",
  "n1/wal/00000000000000000001.wal", // the README's `--data-dir n1`
  "n2/jwt_secret",
  "cert/key.pem",
  "cert/ca-key.pem",
  "bench/results.json",
  "dynarust",
  ".git/config",
  "src/store/encryption_key.ts.tmp",
];

/** The files of the build context: what `.dockerignore` lets through. */
async function buildContext(): Promise<Set<string>> {
  const matcher = ignore().add(dockerignore.split("\n"));
  return new Set(matcher.filter([...await filesUnder(root), ...localPaths]));
}

Deno.test("Dockerfile: dockerfile-utils finds no problem in it", () => {
  const problems = validate(dockerfile).map((problem) =>
    `line ${problem.range.start.line + 1}: ${problem.message}`
  );
  assert.deepEqual(problems, []);
});

Deno.test(
  ".dockerignore: the context holds the build's inputs and the key module, and nothing else",
  async () => {
    const context = await buildContext();
    assert.ok(
      context.has("src/store/encryption_key.ts"),
      "the key module must reach the build (the image embeds it)",
    );
    const copied = buildStage(dockerfile).filter((step) => step.keyword === "COPY")
      .flatMap((step) => step.args.split(/\s+/).slice(0, -1));
    for (const source of copied) {
      assert.ok(
        [...context].some((file) => file === source || file.startsWith(`${source}/`)),
        `COPY ${source}`,
      );
    }
    const leaked = [...context].filter((file) =>
      !copied.some((source) => file === source || file.startsWith(`${source}/`))
    );
    assert.deepEqual(leaked, [], "files sent to the builder that the Dockerfile never copies");
    const outside = ["data/", "n1/", "n2/", "cert/", "bench/", "tests/", "tools/bench", ".git", "dynarust"];
    for (const prefix of outside) {
      assert.ok(
        ![...context].some((file) => file.startsWith(prefix)),
        `${prefix} must stay out of the context`,
      );
    }
    assert.ok(![...context].some((file) => file.endsWith(".tmp")), "temp files must stay out of the context");
  },
);

Deno.test("Dockerfile: the build stage's test and deno steps succeed on the build context", async () => {
  const work = await Deno.makeTempDir({ prefix: "dynarust_docker_context_" });
  try {
    const context = await buildContext();
    const steps = buildStage(dockerfile);
    for (const step of steps.filter((step) => step.keyword === "COPY")) {
      const parts = step.args.split(/\s+/);
      const target = parts.at(-1)!;
      for (const source of parts.slice(0, -1)) {
        for (const file of [...context].filter((file) => file === source || file.startsWith(`${source}/`))) {
          const into = target.endsWith("/")
            ? `${target}${file.split("/").at(-1)}`
            : file.replace(source, target);
          const path = `${work}/${into}`;
          await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
          await Deno.copyFile(`${root}${file}`, path);
        }
      }
    }
    const key = await Deno.readFile(`${work}/src/store/encryption_key.ts`);
    // `deno` on PATH is this test's Deno, as the deno image has it.
    const bin = `${work}/.bin`;
    await Deno.mkdir(bin);
    await Deno.symlink(Deno.execPath(), `${bin}/deno`);
    const env = { PATH: `${bin}:${Deno.env.get("PATH")}`, NO_COLOR: "1" };
    let compileSkipped: string | undefined;
    for (const step of steps.filter((step) => step.keyword === "RUN" && /^(test|deno) /.test(step.args))) {
      const output = await new Deno.Command("sh", { args: ["-c", step.args], cwd: work, env }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      // tools/compile.ts exits 69 only when the runtime cannot be had: the key step, the module graph and
      // the type check (all before the download) passed.
      if (step.args === "deno task compile" && output.code === unavailableExitCode) {
        compileSkipped = stderr.trim().split("\n").at(-1);
        continue;
      }
      assert.ok(output.success, `RUN ${step.args} failed: ${stderr}`);
    }
    assert.deepEqual(
      await Deno.readFile(`${work}/src/store/encryption_key.ts`),
      key,
      "the build keeps the key",
    );
    if (compileSkipped !== undefined) {
      console.log(`docker test: RUN deno task compile skipped: ${compileSkipped}`);
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

/** Runs `docker ...args`; `undefined` when there is no docker command at all. */
async function docker(
  args: string[],
): Promise<{ success: boolean; stdout: string; stderr: string } | undefined> {
  try {
    const output = await new Deno.Command("docker", { args, stdout: "piped", stderr: "piped" }).output();
    const decoder = new TextDecoder();
    return {
      success: output.success,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Why the image cannot be built here, or undefined when a daemon answers `docker info`. */
async function dockerUnavailable(): Promise<string | undefined> {
  const info = await docker(["info", "--format", "{{.ServerVersion}}"]);
  if (info === undefined) return "no docker command on this machine";
  if (!info.success) {
    return `no Docker daemon reachable (docker info: ${info.stderr.trim().split("\n").at(-1)})`;
  }
  return undefined;
}

const skipped = await dockerUnavailable();
if (skipped !== undefined) console.log(`docker test skipped: ${skipped}`);

Deno.test({
  name: "docker: the image builds, runs as 65532 and turns healthy through `dynarust health`",
  ignore: skipped !== undefined,
  async fn() {
    const tag = `dynarust-test:${Deno.pid}`;
    const built = await docker(["build", "-t", tag, root]);
    if (!built!.success) {
      if (/pull|resolve|dial tcp|lookup|network/i.test(built!.stderr)) {
        console.log(
          `docker build skipped: the base images cannot be pulled here: ${built!.stderr.slice(-300)}`,
        );
        return;
      }
      assert.fail(`docker build failed: ${built!.stderr}`);
    }
    const name = `dynarust-test-${Deno.pid}`;
    try {
      const run = await docker([
        "run",
        "-d",
        "--name",
        name,
        "-p",
        "127.0.0.1::6660",
        "-v",
        `${name}:/data`,
        "-e",
        "JWT_SECRET=docker-test-secret-0123456789abcdef",
        tag,
      ]);
      assert.ok(run!.success, run!.stderr);
      const user = await docker(["inspect", "-f", "{{.Config.User}}", name]);
      assert.equal(user!.stdout.trim(), "65532:65532");
      await waitFor(async () => {
        const status = await docker(["inspect", "-f", "{{.State.Health.Status}}", name]);
        assert.notEqual(status!.stdout.trim(), "unhealthy", (await docker(["logs", name]))!.stderr);
        return status!.stdout.trim() === "healthy";
      }, { timeoutMs: 60_000, intervalMs: 500, what: "the container's health check to pass" });
      const port = (await docker(["port", name, "6660"]))!.stdout.trim().split(":").at(-1);
      const health = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(health.status, 200, await health.text());
    } finally {
      await docker(["rm", "-f", name]);
      await docker(["volume", "rm", name]);
      await docker(["rmi", tag]);
    }
  },
});
