import { Hono } from "hono";
import { ui } from "./edge/ui.ts";

export { RealmObject } from "../durable-objects/realm.ts";

const app = new Hono<{ Bindings: Env }>();
app.get("/healthz", (c) => c.json({ ok: true }));
app.route("/", ui);
export default app;
