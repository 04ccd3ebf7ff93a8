/**
 * `GET /admin`: the dashboard, one page over the public API (members and their states, tables with their
 * key counts, a key browser, a live tail of a table's changes through EventSource, and a login to edit
 * your own keys). Its page, script and style are files of their own in `admin/`, which `deno fmt` and
 * `deno lint` read like any other; they are imported as text, so `deno compile` embeds them in the binary
 * and the node reads no file to serve them.
 *
 * The page has a login form, so it is served with a Content-Security-Policy that lets it load only the
 * node's own script and style (no inline script, style or event-handler attribute) and talk only to the
 * node, and that no other site may frame (clickjacking) or post its form elsewhere.
 */
import type { Context, Hono } from "hono";
import { secureHeaders } from "hono/secure-headers";
import { crc32 } from "../util/crc32.ts";
import adminPage from "./admin/index.html" with { type: "text" };
import adminScript from "./admin/admin.js" with { type: "text" };
import adminStyle from "./admin/admin.css" with { type: "text" };

/** One file of the dashboard, with the headers that do not depend on the request. */
interface AdminAsset {
  path: string;
  bytes: Uint8Array<ArrayBuffer>;
  contentType: string;
  /** A strong validator of `bytes`: a browser revalidates with it and gets a bodiless 304. */
  etag: string;
}

function adminAsset(path: string, text: string, contentType: string): AdminAsset {
  const bytes = new TextEncoder().encode(text);
  return { path, bytes, contentType, etag: `"${crc32(bytes).toString(16).padStart(8, "0")}"` };
}

/** The dashboard's files, by path: the page, and the script and style it loads. */
const adminAssets: readonly AdminAsset[] = [
  adminAsset("/admin", adminPage, "text/html; charset=utf-8"),
  adminAsset("/admin/admin.js", adminScript, "text/javascript; charset=utf-8"),
  adminAsset("/admin/admin.css", adminStyle, "text/css; charset=utf-8"),
];

/** The paths of the dashboard's script and style: two-segment paths that the node app serves, not a table. */
export const adminAssetPaths: ReadonlySet<string> = new Set(
  adminAssets.map((asset) => asset.path).filter((path) => path !== "/admin"),
);

/**
 * The security headers of the dashboard's answers. `Strict-Transport-Security` is left out: whether a node
 * speaks TLS is its configuration's choice, and a dashboard answer must not pin its host name (and, with
 * `includeSubDomains`, every name under it) to HTTPS for six months.
 */
const adminHeaders = secureHeaders({
  contentSecurityPolicy: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'"],
    connectSrc: ["'self'"],
    frameAncestors: ["'none'"],
    formAction: ["'self'"],
    baseUri: ["'none'"],
  },
  xFrameOptions: "DENY",
  referrerPolicy: "no-referrer",
  xContentTypeOptions: "nosniff",
  strictTransportSecurity: false,
});

/**
 * Serves the dashboard's files with their security headers. They are revalidated on every load
 * (`no-cache` with an ETag): a node upgraded in place then never serves its new page with a cached old
 * script, and an unchanged file costs a 304.
 */
export function registerAdminRoutes(app: Hono): void {
  for (const asset of adminAssets) {
    app.get(asset.path, adminHeaders, (context) => adminAnswer(context, asset));
  }
}

function adminAnswer(context: Context, asset: AdminAsset): Response {
  const headers = { "content-type": asset.contentType, "cache-control": "no-cache", etag: asset.etag };
  const ifNoneMatch = context.req.header("if-none-match");
  if (ifNoneMatch !== undefined && matchesEtag(ifNoneMatch, asset.etag)) {
    return new Response(null, { status: 304, headers });
  }
  return new Response(asset.bytes, { headers });
}

/** Whether an `If-None-Match` list names `etag` (weakly compared, as RFC 9110 §13.1.2 asks) or is `*`. */
function matchesEtag(ifNoneMatch: string, etag: string): boolean {
  return ifNoneMatch.split(",").some((tag) => {
    const trimmed = tag.trim();
    return trimmed === "*" || trimmed.replace(/^W\//, "") === etag;
  });
}
