/**
 * The live-state tests' workload (issue 20): a writer that moves tasks in and out of `{"status":"open"}`,
 * deletes and re-creates them and changes `settings/theme`; and what a page following
 * `/subscribe?table=tasks&key=settings/theme&where={"status":"open"}` must end up showing.
 */
import assert from "node:assert/strict";
import { type NodeProcess, putValue } from "./node_process.ts";

/** The filter of the live-state page. */
export const openTasks = { status: "open" };

/** A writer that moves tasks in and out of `{"status":"open"}`, deletes, re-creates and changes the theme. */
export async function writeTasks(node: NodeProcess, options: { token: string; count: number; seed: number }) {
  let state = options.seed;
  const next = (bound: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return (state >>> 16) % bound; // the low bits of an LCG cycle quickly
  };
  for (let index = 0; index < options.count; index += 1) {
    const key = `t${String(next(120)).padStart(3, "0")}`;
    const roll = next(100);
    const response = roll < 8
      ? await node.fetch(`/tasks/key/${key}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${options.token}` },
      })
      : roll < 14
      ? await putValue(node, "/settings/key/theme", `theme-${index}`, { token: options.token })
      : await putValue(node, `/tasks/key/${key}`, {
        title: `task ${key} write ${index}`,
        status: roll % 2 === 0 ? "open" : "closed",
      }, { token: options.token });
    await response.body?.cancel();
    assert.ok([200, 201, 404].includes(response.status), `write answered ${response.status}`);
  }
}

/** What the page must show: every open task and the theme, as `table/key -> version`. */
export async function expectedState(node: NodeProcess): Promise<Record<string, number>> {
  const tasks = await (await node.fetch("/tasks/store")).json() as Record<
    string,
    { version: number; value: { status: string } }
  >;
  const expected: Record<string, number> = {};
  for (const [key, record] of Object.entries(tasks)) {
    if (record.value.status === "open") expected[`tasks/${key}`] = record.version;
  }
  const theme = await node.fetch("/settings/key/theme");
  if (theme.status === 200) expected["settings/theme"] = (await theme.json()).version;
  else await theme.body?.cancel();
  return expected;
}
