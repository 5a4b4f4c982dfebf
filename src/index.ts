// The Hopway edge Worker: the HTTP API (src/edge/app.ts) in front of one
// RealmObject Durable Object per realm, plus the operator's topology page.
import { createApp } from "./edge/app.ts";
import { ui } from "./edge/ui.ts";

export { RealmObject } from "../durable-objects/realm.ts";

const app = createApp();
app.route("/", ui);

export default app;
