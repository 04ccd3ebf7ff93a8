import assert from "node:assert/strict";
import { createLogger } from "../../../src/util/log.ts";

function linesOf(format: "text" | "json"): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ level: "info", format, write: (line) => lines.push(line) }) };
}

Deno.test(
  "createLogger() json format: one parseable object per event, fields beside time, level, msg",
  () => {
    const { lines, logger } = linesOf("json");
    logger.info("serving", { address: "127.0.0.1:6660", startup_ms: 12 });
    logger.error('a "quoted"\nmessage', { level: "not this", nested: { a: [1, 2] } });
    logger.debug("below the threshold");
    assert.equal(lines.length, 2);
    assert.ok(lines.every((line) => !line.includes("\n")));
    const [first, second] = lines.map((line) => JSON.parse(line));
    assert.deepEqual(Object.keys(first), ["time", "level", "msg", "address", "startup_ms"]);
    assert.equal(first.level, "info");
    assert.equal(first.msg, "serving");
    assert.equal(first.startup_ms, 12);
    assert.ok(!Number.isNaN(Date.parse(first.time)));
    assert.equal(second.level, "error", "a field may not overwrite the level");
    assert.equal(second.msg, 'a "quoted"\nmessage');
    assert.deepEqual(second.nested, { a: [1, 2] });
  },
);

Deno.test("createLogger() text format: TIME LEVEL message key=value", () => {
  const { lines, logger } = linesOf("text");
  logger.warn("slow", { peer: "n2", ms: 30 });
  assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\S+Z WARN slow peer="n2" ms=30$/);
});
