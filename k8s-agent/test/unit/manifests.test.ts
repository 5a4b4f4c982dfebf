// Every shipped manifest: built-in kinds validated against the Kubernetes
// OpenAPI schemas (kubernetes-models), CRD kinds checked for the fields their
// controllers require, kustomizations complete in both directions, and the
// cross-references that break autoscaling silently when they drift (metric
// names, ports, labels, RBAC) compared with the code that uses them.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import { ConfigMap, Namespace, Service, ServiceAccount } from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { PreDeleteSchema } from "../../src/admin/schemas.ts";
import { parseConfig } from "../../src/config.ts";
import { DELETION_COST_RBAC } from "../../src/k8s/deletion-cost.ts";
import { LOAD_METRIC, STATE_FLOOR_METRIC } from "../../src/scaling/signals.ts";
import { imageRuntime } from "../support/image-runtime.ts";
import { hasKubectl, kustomize } from "../support/kustomize.ts";

const AGENT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const REPO = join(AGENT, "..");
const DEPLOY = join(AGENT, "deploy");

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form YAML; each check narrows what it reads
type Obj = Record<string, any>;
interface Doc {
  file: string;
  obj: Obj;
}

const yamlFiles = (dir: string): string[] =>
  readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(name) ? [p] : [];
  });

// The base and the adapter rules as written. Overlays hold patches, not whole objects, and are
// checked as built by bk-bcs-manifests.test.ts; components are opt-in patches and CRDs, checked by
// their own tests (manifests-cert-manager.test.ts, deploy/alerts.test.ts, deploy/listeners.test.ts,
// deploy/network-policy.test.ts).
/** Directories under deploy/ used from overlays, not part of `kubectl apply -k deploy`. */
const OPTIONAL_DIRS = ["components", "overlays"];
const docs: Doc[] = yamlFiles(DEPLOY)
  .filter(
    (f) => !f.endsWith("kustomization.yaml") && !OPTIONAL_DIRS.includes(relative(DEPLOY, f).split("/")[0] as string),
  )
  .flatMap((file) =>
    parseAllDocuments(readFileSync(file, "utf8")).map((d) => {
      if (d.errors.length) throw new Error(`${file}: ${d.errors[0]?.message}`);
      return { file: relative(DEPLOY, file), obj: d.toJS() as Obj };
    }),
  );
const one = (kind: string, name?: string): Obj => {
  const found = docs.filter((d) => d.obj.kind === kind && (name === undefined || d.obj.metadata?.name === name));
  expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
  return (found[0] as Doc).obj;
};

// biome-ignore lint/suspicious/noExplicitAny: kubernetes-models classes share only validate()
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "v1/ServiceAccount": ServiceAccount,
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "apps/v1/StatefulSet": StatefulSet,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
};
const CRDS = new Set(["monitoring.coreos.com/v1/ServiceMonitor", "tkex.tencent.com/v1alpha1/HookTemplate"]);

describe("schemas", () => {
  it("every built-in object validates against the Kubernetes schemas; nothing unknown ships", () => {
    expect(docs.length).toBeGreaterThanOrEqual(12);
    for (const { file, obj } of docs) {
      const key = `${obj.apiVersion}/${obj.kind}`;
      expect(obj.metadata?.name, `${file}: metadata.name`).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      if (CRDS.has(key)) continue;
      const Model = MODELS[key];
      expect(Model, `${file}: no schema known for ${key}`).toBeDefined();
      expect(() => new (Model as NonNullable<typeof Model>)(obj).validate(), file).not.toThrow();
    }
  });

  it("the validator does reject a broken object (so the check above can fail)", () => {
    const sts = structuredClone(one("StatefulSet"));
    sts.spec.template.spec.containers[0].ports[0].containerPort = "1234";
    expect(() => new StatefulSet(sts).validate()).toThrow(/containerPort/);
    const hpa = structuredClone(one("HorizontalPodAutoscaler"));
    hpa.spec.metrics[0].pods.target.averageValue = "seven hundred";
    expect(() => new HorizontalPodAutoscaler(hpa as never).validate()).toThrow(/averageValue/);
  });

  it("no Secret values ship: the Secret is only referenced", () => {
    expect(docs.filter((d) => d.obj.kind === "Secret")).toEqual([]);
    const vols = one("StatefulSet").spec.template.spec.volumes as Obj[];
    expect(vols.find((v) => v.secret)?.secret.secretName).toBe("hopway-agent");
  });

  it("ServiceMonitor has what the Prometheus operator requires", () => {
    const sm = one("ServiceMonitor");
    expect(sm.spec.selector.matchLabels).toBeTypeOf("object");
    expect(sm.spec.endpoints.length).toBeGreaterThan(0);
    for (const ep of sm.spec.endpoints as Obj[]) {
      expect(ep.port).toBeTypeOf("string");
      expect(ep.path).toBe("/metrics");
      expect(ep.interval).toMatch(/^\d+s$/);
    }
  });

  it("the example HookTemplate polls the pre-delete endpoint for the field the agent answers", () => {
    const [ht] = parseAllDocuments(readFileSync(join(AGENT, "examples/hooktemplate.yaml"), "utf8")).map(
      (d) => d.toJS() as Obj,
    );
    expect(ht).toMatchObject({ apiVersion: "tkex.tencent.com/v1alpha1", kind: "HookTemplate" });
    expect(ht?.metadata.name).toBeTypeOf("string");
    const metric = ht?.spec.metrics[0] as Obj;
    expect(metric.name).toBeTypeOf("string");
    expect(metric.interval).toBe("2s");
    const { url, jsonPath } = metric.provider.web as { url: string; jsonPath: string };
    expect(url).toBe("http://{{ args.PodIP }}:9090/v1/hooks/pre-delete");
    expect(ht?.spec.args.map((a: Obj) => a.name)).toContain("PodIP");
    const field = /^\{\$\.(\w+)\}$/.exec(jsonPath)?.[1] as string;
    expect(Object.keys(PreDeleteSchema.shape)).toContain(field);
    expect(metric.successCondition).toBe(`asInt(result) == 1`);
  });
});

describe("kustomize", () => {
  const kustomizations = yamlFiles(DEPLOY).filter((f) => f.endsWith("kustomization.yaml"));

  it("each kustomization lists every file and directory beside it, and only those", () => {
    // Examples kept beside a component for its docs, which it must not apply (docs/identity.md).
    const EXAMPLES = ["components/cert-manager/certificate.yaml"];
    expect(kustomizations.map((k) => relative(DEPLOY, k)).sort()).toEqual([
      "base/kustomization.yaml",
      "components/alerts/kustomization.yaml",
      "components/cert-manager/kustomization.yaml",
      "components/listeners/kustomization.yaml",
      "components/network-policy/kustomization.yaml",
      "kustomization.yaml",
      "overlays/bk-bcs-gamedeployment/kustomization.yaml",
      "overlays/bk-bcs-hook/kustomization.yaml",
      "overlays/bk-bcs/kustomization.yaml",
      "prometheus-adapter/kustomization.yaml",
    ]);
    for (const k of kustomizations) {
      const dir = dirname(k);
      const kust = parseYaml(readFileSync(k, "utf8")) as Obj;
      // Paths into other kustomizations (../base) are not files beside this one.
      const local = (p: string) => !p.startsWith("../");
      const listed = [
        ...((kust.resources ?? []) as string[]),
        ...((kust.patches ?? []) as Obj[]).map((p) => p.path as string),
      ].filter(local);
      // Components and overlays build on the base; the root does not list them as resources.
      const present = readdirSync(dir).filter(
        (n) =>
          n !== "kustomization.yaml" &&
          !(dir === DEPLOY && OPTIONAL_DIRS.includes(n)) &&
          !EXAMPLES.includes(relative(DEPLOY, join(dir, n))),
      );
      expect([...listed].sort(), relative(DEPLOY, k)).toEqual(present.sort());
    }
  });

  // CI must not pass by skipping: there a missing kubectl is a failure.
  it.skipIf(!hasKubectl() && !process.env.CI)("kubectl kustomize renders all objects with the namespaces set", () => {
    const out = kustomize(DEPLOY);
    const rendered = parseAllDocuments(out).map((d) => d.toJS() as Obj);
    expect(rendered).toHaveLength(docs.length);
    for (const o of rendered) {
      if (o.kind === "Namespace") continue;
      expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(
        o.metadata.name === "adapter-config" ? "monitoring" : "hopway",
      );
    }
  });
});

describe("cross-checks", () => {
  const sts = one("StatefulSet");
  const pod = sts.spec.template.spec as Obj;
  const container = (pod.containers as Obj[]).find((c) => c.name === "agent") as Obj;
  const port = (name: string) => (container.ports as Obj[]).find((p) => p.name === name)?.containerPort as number;
  const adapter = parseYaml(one("ConfigMap", "adapter-config").data["config.yaml"]) as { rules: Obj[] };
  const hpa = one("HorizontalPodAutoscaler");

  it("the HPA's metric names are exactly the adapter rules' names and the agent's gauges", () => {
    const hpaNames = (hpa.spec.metrics as Obj[]).map((m) => m[m.type === "Pods" ? "pods" : "object"].metric.name);
    const ruleNames = adapter.rules.map((r) => r.name.as as string);
    expect(hpaNames.sort()).toEqual(ruleNames.sort());
    expect(ruleNames.sort()).toEqual([LOAD_METRIC, STATE_FLOOR_METRIC].sort());
    for (const r of adapter.rules) {
      // The series the rule discovers is the gauge the agent exports, unrenamed.
      expect(r.seriesQuery).toMatch(new RegExp(`^${r.name.as}\\{`));
      expect(new RegExp(r.name.matches).test(r.name.as)).toBe(true);
      expect(r.metricsQuery).toMatch(/^max by \(<<\.GroupBy>>\) \(<<\.Series>>\{<<\.LabelMatchers>>\}\)$/);
    }
  });

  it("the HPA targets the StatefulSet with Pods/AverageValue 700m and Object/AverageValue 1", () => {
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "StatefulSet", name: sts.metadata.name });
    const pods = (hpa.spec.metrics as Obj[]).find((m) => m.type === "Pods")?.pods;
    const object = (hpa.spec.metrics as Obj[]).find((m) => m.type === "Object")?.object;
    expect(pods.target).toEqual({ type: "AverageValue", averageValue: "700m" });
    expect(object.target).toEqual({ type: "AverageValue", averageValue: "1" });
    expect(object.describedObject).toEqual({ apiVersion: "apps/v1", kind: "StatefulSet", name: sts.metadata.name });
    const loadRule = adapter.rules.find((r) => r.name.as === LOAD_METRIC) as Obj;
    const floorRule = adapter.rules.find((r) => r.name.as === STATE_FLOOR_METRIC) as Obj;
    expect(loadRule.resources.overrides.pod).toEqual({ resource: "pod" });
    expect(floorRule.resources.overrides.statefulset).toEqual({ group: "apps", resource: "statefulset" });
    expect(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds).toBeGreaterThanOrEqual(60);
    expect(sts.spec.replicas).toBeUndefined(); // the HPA owns it
  });

  it("the ServiceMonitor adds the statefulset label the Object rule needs, via the headless Service", () => {
    const sm = one("ServiceMonitor");
    const relabel = (sm.spec.endpoints[0].relabelings as Obj[]).find((r) => r.targetLabel === "statefulset");
    expect(relabel?.sourceLabels).toEqual([
      "__meta_kubernetes_pod_controller_kind",
      "__meta_kubernetes_pod_controller_name",
    ]);
    expect(new RegExp(`^${relabel?.regex}$`).exec(`StatefulSet;${sts.metadata.name}`)?.[1]).toBe(sts.metadata.name);
    const selected = docs
      .filter((d) => d.obj.kind === "Service")
      .map((d) => d.obj)
      .filter((s) => Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels?.[k] === v));
    expect(selected.map((s) => s.metadata.name)).toEqual([sts.spec.serviceName]);
    expect(selected[0]?.spec.publishNotReadyAddresses).toBe(true);
    expect(selected[0]?.spec.clusterIP).toBe("None");
    const svcPort = ((selected[0]?.spec.ports ?? []) as Obj[]).find((p) => p.name === sm.spec.endpoints[0].port);
    expect(svcPort?.targetPort).toBe("admin");
  });

  it("the Role grants exactly what the deletion-cost patcher uses, to the StatefulSet's ServiceAccount", () => {
    const role = one("Role");
    expect(role.rules).toEqual([
      {
        apiGroups: [...DELETION_COST_RBAC.apiGroups],
        resources: [...DELETION_COST_RBAC.resources],
        verbs: [...DELETION_COST_RBAC.verbs],
      },
    ]);
    const rb = one("RoleBinding");
    expect(rb.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name });
    expect(rb.subjects).toEqual([
      { kind: "ServiceAccount", name: pod.serviceAccountName, namespace: sts.metadata.namespace },
    ]);
    expect(one("ServiceAccount").metadata.name).toBe(pod.serviceAccountName);
    expect(docs.some((d) => d.obj.kind === "ClusterRole" || d.obj.kind === "ClusterRoleBinding")).toBe(false);
  });

  it("the ConfigMap is a valid agent config that agrees with the StatefulSet and the HPA", () => {
    const text = one("ConfigMap", "hopway-agent").data["agent.yaml"] as string;
    const config = parseConfig(text, {
      POD_NAME: "hopway-agent-3",
      POD_NAMESPACE: "hopway",
      POD_UID: "0b7c2f1e-5a4d-4c6b-9e2f-3d1a7b8c9e0f",
      // Stand-ins for the mounted Secret files (env wins over *_file).
      HOPWAY_TOKEN: "test-token",
      HOPWAY_LOCAL_API_TOKEN: "0123456789abcdef-local",
    });
    expect(config.scaling.workload).toBe(sts.metadata.name);
    expect(config.scaling.target_load * 1000).toBe(Number.parseInt(hpa.spec.metrics[0].pods.target.averageValue, 10));
    expect(config.scaling.min_replicas).toBe(hpa.spec.minReplicas);
    expect(config.scaling.max_replicas).toBe(hpa.spec.maxReplicas);
    expect(config.scaling.deletion_cost.enabled).toBe(true); // the Role exists for it
    expect(Number(config.admin.listen.split(":").pop())).toBe(port("admin"));
    expect(config.relay.listen.map((l) => Number(l.split(":").pop()))).toEqual([port("relay")]);
    expect(config.edge.token_file?.startsWith("/var/run/secrets/hopway/")).toBe(true);
    // The local API's writes (they drive the HPA) need a token from the mounted Secret.
    const tokenFile = config.admin.local_api_token_file as string;
    expect(tokenFile.startsWith("/var/run/secrets/hopway/")).toBe(true);
    const secretVolume = (pod.volumes as Obj[]).find((v) => v.secret)?.secret;
    expect((secretVolume.items as Obj[]).map((i) => i.path)).toContain(tokenFile.split("/").pop());
    expect(config.localApiToken).toBe("0123456789abcdef-local");
    expect(config.records[0]?.name).toBe("hopway-agent-3");
    expect(config.pod.uid).toBe("0b7c2f1e-5a4d-4c6b-9e2f-3d1a7b8c9e0f");
    const mounts = container.volumeMounts as Obj[];
    expect(mounts.find((m) => m.name === "config")?.mountPath).toBe("/etc/hopway");
    expect(container.args).toEqual(["--config", "/etc/hopway/agent.yaml"]);
    expect(mounts.find((m) => m.name === "data")?.mountPath).toBe(config.data_dir);
    // The links' window growth fits in the container's memory limit with room for the rest.
    const limitBytes = Number.parseInt(container.resources.limits.memory, 10) * 1024 * 1024;
    expect(container.resources.limits.memory).toMatch(/^\d+Mi$/);
    expect(config.relay.links.window_growth_budget_bytes).toBeLessThanOrEqual(limitBytes / 4);
    // Shutdown fits in the grace period: preStop sleep + drain + margin for deregistration.
    const preStop = container.lifecycle.preStop.sleep.seconds as number;
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(preStop + config.shutdown.drain_seconds + 10);
  });

  it("the StatefulSet has probes, downward API, resources and a locked-down security context", () => {
    expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "admin" });
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "admin" });
    const env = Object.fromEntries((container.env as Obj[]).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
    expect(env.POD_NAME).toBe("metadata.name");
    expect(env.POD_NAMESPACE).toBe("metadata.namespace");
    // Leases at the edge are held by the pod (docs/agent.md, "Two agents, one name").
    expect(env.POD_UID).toBe("metadata.uid");
    expect(container.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(container.resources.limits).toMatchObject({ memory: expect.any(String) });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } });
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(container.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(sts.spec.podManagementPolicy).toBe("OrderedReady");
    expect(one("Service", sts.spec.serviceName).spec.clusterIP).toBe("None");
  });

  it("Services and the PDB select the StatefulSet's pods", () => {
    const podLabels = sts.spec.template.metadata.labels as Record<string, string>;
    expect(sts.spec.selector.matchLabels).toEqual(podLabels);
    for (const d of docs.filter((x) => x.obj.kind === "Service")) {
      expect(
        Object.entries(d.obj.spec.selector).every(([k, v]) => podLabels[k] === v),
        d.file,
      ).toBe(true);
      // A named target is a container port of the agent; a numbered one is a listener's (docs/listeners.md).
      for (const p of d.obj.spec.ports as Obj[]) {
        if (typeof p.targetPort === "string") expect(port(p.targetPort), d.file).toBeDefined();
      }
    }
    const pdb = one("PodDisruptionBudget");
    expect(Object.entries(pdb.spec.selector.matchLabels).every(([k, v]) => podLabels[k] === v)).toBe(true);
  });
});

describe("Dockerfile", () => {
  const text = readFileSync(join(AGENT, "Dockerfile"), "utf8");
  const lines = text.split("\n").filter((l) => !l.startsWith("#"));

  it("is multi-stage, builds the esbuild bundle and runs it as non-root", () => {
    const froms = lines.filter((l) => l.startsWith("FROM "));
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(froms.at(-1)).toMatch(/distroless\/nodejs\d+-debian\d+:nonroot|node:\d+-slim/);
    expect(text).toContain("npm run build -w k8s-agent");
    expect(text).toContain("k8s-agent/dist/hopway-agent.mjs");
    const user = lines.filter((l) => l.startsWith("USER ")).at(-1);
    expect(user).toMatch(/^USER [1-9]\d*(:[1-9]\d*)?$/);
    // The build script the image relies on exists.
    const pkg = JSON.parse(readFileSync(join(AGENT, "package.json"), "utf8")) as { scripts?: Record<string, string> };
    expect(pkg.scripts?.build).toContain("--outfile=dist/hopway-agent.mjs");
  });

  it("starts the bundle with node so that the StatefulSet's args reach the agent", () => {
    const image = imageRuntime(text);
    // Kubernetes `args` replace CMD and are appended to ENTRYPOINT: the script must be in ENTRYPOINT.
    expect(lines.some((l) => l.startsWith("CMD "))).toBe(false);
    expect(image.entrypoint[0]).toMatch(/\/node$/);
    const bundle = lines
      .find((l) => l.startsWith("COPY --from=build") && l.includes("hopway-agent.mjs"))
      ?.split(/\s+/)
      .at(-1);
    expect(image.script).toBe(bundle);
    const container = (one("StatefulSet").spec.template.spec.containers as Obj[]).find(
      (c) => c.name === "agent",
    ) as Obj;
    expect(container.command, "a command would replace the image's ENTRYPOINT").toBeUndefined();
    expect(container.args.slice(0, 2)).toEqual(["--config", "/etc/hopway/agent.yaml"]);
  });

  it("runs node with the flags bin/hopway-agent.mjs runs with", () => {
    const image = imageRuntime(text);
    const shebang = readFileSync(join(AGENT, "bin", "hopway-agent.mjs"), "utf8").split("\n")[0] ?? "";
    const binFlags = shebang
      .replace(/^#!\/usr\/bin\/env -S node\s*/, "")
      .split(/\s+/)
      .filter(Boolean);
    expect(image.nodeFlags).toEqual(binFlags);
    expect(image.nodeFlags).toContain("--max-semi-space-size=2");
    // NODE_OPTIONS in the StatefulSet adds to the entrypoint's flags; it must not fight them.
    const container = (one("StatefulSet").spec.template.spec.containers as Obj[]).find(
      (c) => c.name === "agent",
    ) as Obj;
    const nodeOptions = ((container.env as Obj[]).find((e) => e.name === "NODE_OPTIONS")?.value ?? "") as string;
    expect(nodeOptions).not.toMatch(/semi-space/);
  });

  it("parsing the image rejects an ENTRYPOINT node cannot run the agent from", () => {
    expect(() => imageRuntime('FROM x\nCMD ["/app/a.mjs"]\n')).toThrow(/no ENTRYPOINT/);
    expect(() => imageRuntime("FROM x\nENTRYPOINT node /app/a.mjs\n")).toThrow();
    expect(() => imageRuntime('FROM x\nENTRYPOINT ["/nodejs/bin/node", "--flag"]\n')).toThrow(/no script/);
  });

  it("builds the native splice and puts it beside the bundle, where the relay looks for it", () => {
    expect(text).toContain("node k8s-agent/native/build.mjs --require");
    const image = imageRuntime(text);
    const addon = lines
      .find((l) => l.startsWith("COPY --from=build") && l.includes("hopway-splice.node"))
      ?.split(/\s+/)
      .at(-1);
    expect(addon).toBe(join(dirname(image.script), "hopway-splice.node"));
    // native-splice.ts looks for that name beside its own module, which the bundle is.
    expect(readFileSync(join(AGENT, "src", "relay", "native-splice.ts"), "utf8")).toContain(
      'new URL("hopway-splice.node", import.meta.url)',
    );
  });

  it("copies only paths that exist, and the ignore file lets them through", () => {
    const ignore = readFileSync(join(AGENT, "Dockerfile.dockerignore"), "utf8");
    for (const l of lines.filter((x) => x.startsWith("COPY ") && !x.includes("--from="))) {
      const parts = l.split(/\s+/).slice(1, -1);
      for (const src of parts) {
        expect(existsSync(join(REPO, src)), src).toBe(true);
        const allowed = ignore.split("\n").some((p) => p === `!${src}` || p === `!${src}/**`);
        expect(allowed, `${src} is excluded by Dockerfile.dockerignore`).toBe(true);
      }
    }
  });
});
