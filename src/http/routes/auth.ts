import type { Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { readJsonBody } from "../body.ts";
import { clientAddress, jsonText, rawSegments } from "../request.ts";
import { AuthBody, decodeName, parseWith } from "../schemas.ts";

/** `POST /auth/{user}`: register on first call, log in after (SPEC §3 row 1). */
export function registerAuthRoutes(app: Hono, deps: AppDeps): void {
  app.post("/auth/:user", async (c) => {
    const user = decodeName(rawSegments(c.req.url)[1] ?? "", {
      what: "user",
      bytesMax: deps.limits.nameBytesMax,
    });
    const body = await readJsonBody(c.req.raw, { bytesMax: deps.limits.requestBytesMax, depthMax: 2 });
    const { secret } = parseWith(AuthBody, body, "body");
    const result = await deps.auth.authenticate(user, secret, clientAddress(c));
    return result.created
      ? jsonText(JSON.stringify({ status: "User created", token: result.token }), 201)
      : jsonText(JSON.stringify({ token: result.token }));
  });
}
