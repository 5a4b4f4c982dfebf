import { Hono } from "hono";

export { RealmObject } from "../durable-objects/realm.ts";

const app = new Hono<{ Bindings: Env }>();
app.get("/healthz", (c) => c.json({ ok: true }));
export default app;
