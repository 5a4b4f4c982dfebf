// The operator's topology page: a static HTML page, a stylesheet and one
// script, all served from the Worker itself so `wrangler dev` shows it out of
// the box. The page holds no data: its script reads the realm from the /v1 API
// with a reader token that the operator types in or hands over in the URL
// fragment. Mounted in src/index.ts with `app.route("/", ui)`.
import { Hono } from "hono";
import { APP_JS, ASSET_HASH, ICON_SVG, PAGE_HTML, STYLE_CSS } from "./ui/generated/assets.ts";

// Only this origin's own script and stylesheet may run or load; the page talks
// only to this origin; nothing may frame it. Record contents are rendered as
// text, and this policy is the second fence should that ever slip.
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
};

const ETAG = `"ui-${ASSET_HASH}"`;

function asset(request: Request, body: string, type: string): Response {
  const headers = new Headers(SECURITY_HEADERS);
  headers.set("content-type", type);
  headers.set("etag", ETAG);
  // The page references assets with ?v=<hash>: such a URL never changes meaning, so it may be cached for good.
  const versioned = new URL(request.url).searchParams.get("v") === ASSET_HASH;
  headers.set("cache-control", versioned ? "public, max-age=31536000, immutable" : "no-cache");
  if (request.headers.get("if-none-match") === ETAG) return new Response(null, { status: 304, headers });
  return new Response(body, { headers });
}

function page(request: Request): Response {
  const headers = new Headers(SECURITY_HEADERS);
  headers.set("content-type", "text/html; charset=utf-8");
  headers.set("cache-control", "no-cache");
  headers.set("etag", ETAG);
  if (request.headers.get("if-none-match") === ETAG) return new Response(null, { status: 304, headers });
  return new Response(PAGE_HTML, { headers });
}

export const ui = new Hono<{ Bindings: Env }>();

// The root doubles as the realm picker; the script shows the form when the path names no realm.
ui.get("/", (c) => page(c.req.raw));
ui.get("/ui", (c) => c.redirect("/", 308));
ui.get("/ui/", (c) => c.redirect("/", 308));
ui.get("/ui/assets/app.js", (c) => asset(c.req.raw, APP_JS, "text/javascript; charset=utf-8"));
ui.get("/ui/assets/icon.svg", (c) => asset(c.req.raw, ICON_SVG, "image/svg+xml"));
ui.get("/favicon.ico", (c) => c.redirect(`/ui/assets/icon.svg?v=${ASSET_HASH}`, 301));
ui.get("/ui/assets/style.css", (c) => asset(c.req.raw, STYLE_CSS, "text/css; charset=utf-8"));
// Any realm name the edge accepts (a DNS-1123 subdomain); the script checks the length.
ui.get("/ui/:realm{[a-z0-9][-a-z0-9.]*}", (c) => page(c.req.raw));
