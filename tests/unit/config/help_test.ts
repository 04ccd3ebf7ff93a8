// Goal: `--help` documents every flag of the configuration schema with its env vars, meaning and default,
// within 100 columns, and the README's configuration table lists the same flags and env vars with the same
// defaults (issue 21 item 3). Method: the expected flags and defaults are read from the schema itself
// (its fields, and a config parsed from a listen address alone), then looked for in `helpText()` and in the
// rows of the README's table; every failure names the flags it misses.
import assert from "node:assert/strict";
import { helpColumnsMax, helpText } from "../../../src/config/help.ts";
import { ConfigError, limitFlag, loadConfig } from "../../../src/config/load.ts";
import { ConfigSchema, configSettings, limitSettings, type Setting } from "../../../src/config/schema.ts";

interface Expected {
  flag: string;
  env: readonly string[];
  defaultText: string;
  removed: boolean;
}

/** What the schema says of each flag: its env vars, and its default as the parsed schema has it. */
function expectedFlags(): Expected[] {
  const defaults = ConfigSchema.parse({ listen: "127.0.0.1:0" });
  const words = (value: unknown) =>
    value === false ? "off" : Array.isArray(value) ? value.join(",") : String(value);
  return [
    ...Object.entries(configSettings).map(([name, setting]: [string, Setting]) => ({
      flag: setting.flag,
      env: setting.env,
      defaultText: setting.defaultText ?? words(defaults[name as keyof typeof configSettings]),
      removed: setting.removed === true,
    })),
    ...Object.entries(limitSettings).map(([name, setting]) => ({
      flag: limitFlag(name),
      env: [setting.env],
      defaultText: words(defaults.limits[name as keyof typeof limitSettings]),
      removed: false,
    })),
  ];
}

/** `--help`'s text of each flag: its first line and the indented lines under it, joined by spaces. */
function helpBlocks(text: string): Map<string, string> {
  const blocks = new Map<string, string>();
  let current: string | undefined;
  for (const line of text.split("\n")) {
    const head = /^ {2}--([a-z-]+)/.exec(line);
    if (head !== null) {
      current = head[1]!;
      blocks.set(current, line.trim());
    } else if (current !== undefined && line.startsWith("      ")) {
      blocks.set(current, `${blocks.get(current)} ${line.trim()}`);
    } else {
      current = undefined;
    }
  }
  return blocks;
}

/** The rows of the README's configuration table: flags, env vars and the default cell (backticks dropped). */
async function readmeRows(): Promise<Array<{ flags: string[]; env: string[]; defaultCell: string }>> {
  const readme = await Deno.readTextFile(new URL("../../../README.md", import.meta.url));
  const section = readme.split(/^## /m).find((part) => part.startsWith("Configuration\n"));
  assert.ok(section !== undefined, "README has no ## Configuration section");
  const rows = section.split("\n").filter((line) => line.startsWith("| `") || line.startsWith("| —"));
  assert.ok(rows.length > 0, "README's configuration table has no rows");
  return rows.map((row) => {
    const cells = row.slice(1, -1).split(/\s\|\s/).map((cell) => cell.trim());
    assert.equal(cells.length, 4, `README row is not env | flag | meaning | default: ${row}`);
    const ticked = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((match) => match[1]!);
    return {
      env: ticked(cells[0]!).map((name) => /^[A-Z][A-Z0-9_]*/.exec(name)![0]),
      flags: ticked(cells[1]!).map((flag) => flag.replace(/^--/, "")),
      defaultCell: cells[3]!.replaceAll("`", ""),
    };
  });
}

function missing(expected: Iterable<string>, actual: Set<string>): string[] {
  return [...expected].filter((item) => !actual.has(item));
}

Deno.test("configSettings names every field of ConfigSchema but the two addresses and the limits", () => {
  const fields = Object.keys(ConfigSchema.shape).filter((name) =>
    !["listen", "join", "limits"].includes(name)
  );
  const documented = new Set(Object.keys(configSettings));
  assert.deepEqual(missing(fields, documented), [], "schema fields without a setting (flag, env, meaning)");
  assert.deepEqual(missing(documented, new Set(fields)), [], "settings that are not schema fields");
});

Deno.test("helpText() lists every flag of the schema with its env vars and its default", () => {
  const blocks = helpBlocks(helpText());
  const expected = expectedFlags();
  assert.deepEqual(
    missing(expected.map((entry) => entry.flag), new Set(blocks.keys())),
    [],
    "flags not in --help",
  );
  for (const entry of expected) {
    const block = blocks.get(entry.flag)!;
    for (const name of entry.env) {
      assert.ok(block.includes(`env ${name}`) || block.includes(` or ${name}`), block);
    }
    if (!entry.removed) assert.ok(block.includes(`(default: ${entry.defaultText})`), block);
    assert.ok(block.split(/\s+/).length > 4, `--${entry.flag} has no meaning: ${block}`);
  }
});

Deno.test("helpText() fits in 100 columns", () => {
  const long = helpText().split("\n").filter((line) => line.length > helpColumnsMax);
  assert.deepEqual(long, [], `lines over ${helpColumnsMax} columns`);
});

Deno.test("loadConfig() accepts every flag --help lists", () => {
  for (const flag of helpBlocks(helpText()).keys()) {
    const takesValue = !(Object.values(configSettings) as Setting[]).some((setting) =>
      setting.flag === flag && setting.value === undefined
    );
    try {
      loadConfig({ args: ["127.0.0.1:0", `--${flag}`, ...(takesValue ? ["1"] : [])], env: {} });
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.ok(!error.issues.some((issue) => /unknown option/i.test(issue)), error.issues.join("; "));
    }
  }
});

Deno.test(
  "README's configuration table lists the flags and env vars of --help, with their defaults",
  async () => {
    const rows = await readmeRows();
    const expected = expectedFlags();
    const live = expected.filter((entry) => !entry.removed);
    const readmeFlags = new Set(rows.flatMap((row) => row.flags));
    const helpFlags = new Set(live.map((entry) => entry.flag));
    assert.deepEqual(missing(helpFlags, readmeFlags), [], "flags of --help missing from the README table");
    assert.deepEqual(missing(readmeFlags, helpFlags), [], "flags in the README table that --help lacks");
    const helpEnv = new Set(live.flatMap((entry) => entry.env));
    const readmeEnv = new Set(rows.flatMap((row) => row.env));
    assert.deepEqual(missing(helpEnv, readmeEnv), [], "env vars of --help missing from the README table");
    assert.deepEqual(missing(readmeEnv, helpEnv), [], "env vars in the README table that --help lacks");
    for (const row of rows) {
      const entries = live.filter((entry) => row.flags.includes(entry.flag));
      assert.deepEqual(
        row.env.toSorted(),
        entries.flatMap((entry) => entry.env).toSorted(),
        row.flags.join(),
      );
      for (const entry of entries) {
        assert.ok(
          row.defaultCell.includes(entry.defaultText),
          `--${entry.flag}: README says "${row.defaultCell}"`,
        );
      }
    }
  },
);

Deno.test("README's configuration section names each removed setting", async () => {
  const readme = await Deno.readTextFile(new URL("../../../README.md", import.meta.url));
  const section = readme.split(/^## /m).find((part) => part.startsWith("Configuration\n"))!;
  for (const entry of expectedFlags().filter((entry) => entry.removed)) {
    assert.ok(section.includes(`\`${entry.env[0]}\``), `README does not say ${entry.env[0]} is gone`);
  }
});
