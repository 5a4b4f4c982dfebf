// The bk-bcs overlay (deploy/overlays/bk-bcs): built with `kubectl kustomize`,
// every bk-bcs object validated against its real CRD's openAPIV3Schema
// (test/fixtures/crds/bk-bcs, copied from TencentBlueKing/bk-bcs), every
// built-in object against the Kubernetes schemas, and the cross-references
// that must agree with the base (HPA ↔ GPA, StatefulSet ↔ GameStatefulSet,
// adapter rules ↔ ServiceMonitor labels ↔ GPA metrics) compared. The GPA's
// metric formulas are run on the shipped targets.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deletionCostBucket } from "@hopway/core/scaling";
import { type HpaMetric, HpaModel, hpaMetricProposal } from "@hopway/core/testing/hpa-model";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import { ConfigMap, Namespace, Service, ServiceAccount } from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { PreDeleteSchema } from "../../src/admin/schemas.ts";
import { parseConfig } from "../../src/config.ts";
import { LOAD_METRIC, STATE_FLOOR_METRIC } from "../../src/scaling/signals.ts";
import { hasKubectl, kustomize } from "../support/kustomize.ts";
import { type CrdVersion, loadCrds, validateAgainstCrd } from "../support/structural-schema.ts";

const AGENT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const DEPLOY = join(AGENT, "deploy");
const OVERLAY = join(DEPLOY, "overlays/bk-bcs");
const GD_OVERLAY = join(DEPLOY, "overlays/bk-bcs-gamedeployment");
const HOOK = join(DEPLOY, "overlays/bk-bcs-hook/hooktemplate.yaml");
const CRD_DIR = join(AGENT, "test/fixtures/crds/bk-bcs");

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form YAML; each check narrows what it reads
type Obj = Record<string, any>;

const crds: CrdVersion[] = readdirSync(CRD_DIR)
  .filter((f) => f.endsWith(".yaml"))
  .flatMap((f) => loadCrds(readFileSync(join(CRD_DIR, f), "utf8")));
const crdFor = (obj: Obj): CrdVersion | undefined =>
  crds.find((c) => `${c.group}/${c.version}` === obj.apiVersion && c.kind === obj.kind);

const readDocs = (file: string): Obj[] =>
  parseAllDocuments(readFileSync(file, "utf8")).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]?.message}`);
    return d.toJS() as Obj;
  });

// biome-ignore lint/suspicious/noExplicitAny: kubernetes-models classes share only validate()
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "v1/ServiceAccount": ServiceAccount,
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
};
// Kinds whose CRD is not in the fixtures; the base test checks what their operator requires.
const SCHEMALESS = new Set(["monitoring.coreos.com/v1/ServiceMonitor"]);

/** Errors of one object: its CRD's schema for bk-bcs kinds, kubernetes-models for built-in kinds. */
function problems(obj: Obj): string[] {
  const crd = crdFor(obj);
  if (crd) return validateAgainstCrd(obj, crd).map((e) => `${e.path}: ${e.message}`);
  const key = `${obj.apiVersion}/${obj.kind}`;
  if (SCHEMALESS.has(key)) return [];
  const Model = MODELS[key];
  if (!Model) return [`no schema known for ${key}`];
  try {
    new Model(obj).validate();
    return [];
  } catch (err) {
    return [String(err)];
  }
}

describe("the bk-bcs CRDs (fixtures)", () => {
  it("are the five v1 CRDs with the kinds the overlay uses, each with a schema", () => {
    expect(crds.map((c) => `${c.group}/${c.version}/${c.kind}`).sort()).toEqual([
      "autoscaling.tkex.tencent.com/v1alpha1/GeneralPodAutoscaler",
      "tkex.tencent.com/v1alpha1/GameDeployment",
      "tkex.tencent.com/v1alpha1/GameStatefulSet",
      "tkex.tencent.com/v1alpha1/HookRun",
      "tkex.tencent.com/v1alpha1/HookTemplate",
    ]);
    // The GPA scales through the scale subresource: both workloads must have it.
    for (const kind of ["GameStatefulSet", "GameDeployment"])
      expect(crds.find((c) => c.kind === kind)?.subresources.scale?.specReplicasPath).toBe(".spec.replicas");
  });

  it("the validator accepts bk-bcs's own HookTemplate examples", () => {
    const dir = join(CRD_DIR, "examples/preDeleteHook");
    const files = readdirSync(dir);
    expect(files.length).toBe(3);
    for (const f of files) for (const obj of readDocs(join(dir, f))) expect(problems(obj), f).toEqual([]);
  });

  it("the validator rejects what the API server would: unknown, mistyped, missing and out-of-range fields", () => {
    const ht = readDocs(HOOK)[0] as Obj;
    const broken = (mutate: (o: Obj) => void) => {
      const o = structuredClone(ht);
      mutate(o);
      return problems(o);
    };
    expect(broken((o) => (o.spec.metrics[0].failureLimt = 3))).toEqual(["spec.metrics[0].failureLimt: unknown field"]);
    expect(broken((o) => (o.spec.metrics[0].failureLimit = "1800"))).toEqual([
      'spec.metrics[0].failureLimit: must be an integer, got "1800"',
    ]);
    expect(broken((o) => delete o.spec.metrics[0].provider.web.jsonPath)).toEqual([
      "spec.metrics[0].provider.web.jsonPath: required field is missing",
    ]);
    expect(broken((o) => (o.spec.policy = "Serial"))).toEqual(['spec.policy: must be one of "Parallel", "Ordered"']);
    expect(broken((o) => (o.spec.metrics[0].count = 2 ** 31))).toEqual(["spec.metrics[0].count: out of int32 range"]);
    expect(broken((o) => (o.metadata.name = "Hopway_Pre"))).toEqual(["metadata.name: must be a DNS subdomain"]);
    expect(broken((o) => (o.kind = "HookTemplates"))).toEqual([
      "no schema known for tkex.tencent.com/v1alpha1/HookTemplates",
    ]);
    const gpa = readDocs(join(OVERLAY, "gpa.yaml"))[0] as Obj;
    gpa.spec.metric.metrics[0].pods.target.averageValue = "seven hundred";
    expect(problems(gpa)).toEqual([
      expect.stringMatching(/^spec\.metric\.metrics\[0\]\.pods\.target\.averageValue: 'seven hundred' does not match/),
    ]);
  });
});

describe("the validator itself", () => {
  it("refuses to half-check: a schema keyword it does not implement is an error, not a pass", () => {
    const crd = crds.find((c) => c.kind === "HookTemplate") as CrdVersion;
    const [ht] = readDocs(HOOK);
    const odd: CrdVersion = {
      ...crd,
      schema: { type: "object", properties: { spec: { type: "object", oneOf: [] } as never } },
    };
    expect(() => validateAgainstCrd(ht, odd)).toThrow(/'oneOf' is not supported/);
  });

  it("int-or-string fields take integers and matching strings only", () => {
    const gss = crds.find((c) => c.kind === "GameDeployment") as CrdVersion;
    const obj = (maxSurge: unknown) => ({
      apiVersion: "tkex.tencent.com/v1alpha1",
      kind: "GameDeployment",
      metadata: { name: "x" },
      spec: {
        selector: { matchLabels: { a: "b" } },
        template: { spec: { containers: [{ name: "c", image: "i" }] } },
        updateStrategy: { maxSurge },
      },
    });
    expect(validateAgainstCrd(obj(1), gss)).toEqual([]);
    expect(validateAgainstCrd(obj("25%"), gss)).toEqual([]);
    expect(validateAgainstCrd(obj(1.5), gss)).toEqual([
      { path: "spec.updateStrategy.maxSurge", message: "must be an integer or a string" },
    ]);
  });
});

describe("the overlay's own objects (no kubectl needed)", () => {
  it("the HookTemplate and both GPAs validate against their CRDs", () => {
    for (const f of [HOOK, join(OVERLAY, "gpa.yaml"), join(GD_OVERLAY, "gpa.yaml")])
      for (const obj of readDocs(f)) expect(problems(obj), f).toEqual([]);
  });

  it("the example HookTemplate is the overlay's, without the namespace", () => {
    const [example] = readDocs(join(AGENT, "examples/hooktemplate.yaml"));
    const [shipped] = readDocs(HOOK);
    expect(problems({ ...example, metadata: { ...example?.metadata, namespace: "hopway" } })).toEqual([]);
    expect(example?.spec).toEqual(shipped?.spec);
  });
});

// CI must not pass by skipping: there a missing kubectl is a failure.
describe.skipIf(!hasKubectl() && !process.env.CI)("the overlay as kubectl kustomize builds it", () => {
  const built = () => parseAllDocuments(kustomize(OVERLAY)).map((d) => d.toJS() as Obj);
  const base = () => parseAllDocuments(kustomize(DEPLOY)).map((d) => d.toJS() as Obj);
  const find = (objs: Obj[], kind: string, name?: string): Obj => {
    const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
    expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
    return found[0] as Obj;
  };

  it("every object validates: bk-bcs kinds against their CRDs, the rest against Kubernetes", () => {
    const objs = built();
    expect(objs.map((o) => o.kind).sort()).toEqual(
      [
        "ConfigMap",
        "ConfigMap",
        "GameStatefulSet",
        "GeneralPodAutoscaler",
        "HookTemplate",
        "Namespace",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
      ].sort(),
    );
    for (const o of objs) expect(problems(o), `${o.kind}/${o.metadata.name}`).toEqual([]);
    for (const o of objs.filter((x) => x.kind !== "Namespace"))
      expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(
        o.metadata.name === "adapter-config" ? "monitoring" : "hopway",
      );
  });

  it("the built GameStatefulSet is rejected when broken (so the check above can fail)", () => {
    const gss = find(built(), "GameStatefulSet");
    const misspelled = structuredClone(gss);
    misspelled.spec.preDeleteUpdateStategy = misspelled.spec.preDeleteUpdateStrategy;
    delete misspelled.spec.preDeleteUpdateStrategy;
    expect(problems(misspelled)).toEqual(["spec.preDeleteUpdateStategy: unknown field"]);
    const noStrategy = structuredClone(gss);
    delete noStrategy.spec.updateStrategy;
    expect(problems(noStrategy)).toEqual(["spec.updateStrategy: required field is missing"]);
    // The base's preStop sleep is not in this CRD's pod template: why the overlay removes it.
    const withSleep = structuredClone(gss);
    withSleep.spec.template.spec.containers[0].lifecycle = { preStop: { sleep: { seconds: 5 } } };
    expect(problems(withSleep)).toEqual(["spec.template.spec.containers[0].lifecycle.preStop.sleep: unknown field"]);
  });

  it("the GameStatefulSet is the base StatefulSet plus the hook, minus the preStop sleep", () => {
    const gss = find(built(), "GameStatefulSet");
    const sts = find(base(), "StatefulSet");
    const expected = structuredClone(sts);
    expected.apiVersion = "tkex.tencent.com/v1alpha1";
    expected.kind = "GameStatefulSet";
    expected.spec.preDeleteUpdateStrategy = { hook: { templateName: "hopway-pre-delete" } };
    delete expected.spec.template.spec.containers[0].lifecycle;
    expect(gss).toEqual(expected);
    expect(gss.spec.replicas).toBeUndefined(); // the GPA owns it
    expect(gss.spec.podManagementPolicy).toBe("OrderedReady");
  });

  it("the hook template is the one the GameStatefulSet names, and polls the agent's admin port for a field it answers", () => {
    const objs = built();
    const gss = find(objs, "GameStatefulSet");
    const ht = find(objs, "HookTemplate");
    expect(ht.metadata.name).toBe(gss.spec.preDeleteUpdateStrategy.hook.templateName);
    expect(ht.metadata.namespace).toBe(gss.metadata.namespace); // the operator looks it up in the pod's namespace
    const adminPort = (gss.spec.template.spec.containers[0].ports as Obj[]).find(
      (p) => p.name === "admin",
    )?.containerPort;
    const web = ht.spec.metrics[0].provider.web;
    expect(web.url).toBe(`http://{{ args.PodIP }}:${adminPort}/v1/hooks/pre-delete`);
    const field = /^\{\$\.(\w+)\}$/.exec(web.jsonPath)?.[1] as string;
    expect(Object.keys(PreDeleteSchema.shape)).toContain(field);
    // The hook gives up (Failed) only after the agent's drain could have finished many times over.
    const cm = find(objs, "ConfigMap", "hopway-agent");
    const drain = (parseYaml(cm.data["agent.yaml"]) as Obj).shutdown.drain_seconds as number;
    expect(ht.spec.metrics[0].failureLimit * 2).toBeGreaterThan(drain * 10);
  });

  it("the GPA is the base HPA: same bounds, same metrics on the GameStatefulSet, same behaviour", () => {
    const objs = built();
    const gpa = find(objs, "GeneralPodAutoscaler");
    const gss = find(objs, "GameStatefulSet");
    const hpa = find(base(), "HorizontalPodAutoscaler");
    const target = { apiVersion: gss.apiVersion, kind: gss.kind, name: gss.metadata.name };
    expect(gpa.spec.scaleTargetRef).toEqual(target);
    expect(gpa.spec.minReplicas).toBe(hpa.spec.minReplicas);
    expect(gpa.spec.maxReplicas).toBe(hpa.spec.maxReplicas);
    expect(gpa.spec.behavior).toEqual(hpa.spec.behavior);
    const hpaMetrics = structuredClone(hpa.spec.metrics) as Obj[];
    for (const m of hpaMetrics) if (m.type === "Object") m.object.describedObject = target;
    expect(gpa.spec.metric.metrics).toEqual(hpaMetrics);
    expect(gpa.spec.metric.metrics.map((m: Obj) => m[m.type === "Pods" ? "pods" : "object"].metric.name)).toEqual([
      LOAD_METRIC,
      STATE_FLOOR_METRIC,
    ]);
    expect(objs.some((o) => o.kind === "HorizontalPodAutoscaler")).toBe(false); // no second autoscaler
  });

  it("the floor series reach the GPA: ServiceMonitor label → adapter rule → GameStatefulSet", () => {
    const objs = built();
    const gss = find(objs, "GameStatefulSet");
    const sm = find(objs, "ServiceMonitor");
    const relabel = sm.spec.endpoints[0].relabelings[0] as Obj;
    const label = relabel.targetLabel as string;
    expect(label).toBe("gamestatefulset");
    expect(new RegExp(`^${relabel.regex}$`).exec(`GameStatefulSet;${gss.metadata.name}`)?.[1]).toBe(gss.metadata.name);
    // Prometheus anchors the regex: pods of a plain StatefulSet do not match.
    expect(new RegExp(`^${relabel.regex}$`).test(`StatefulSet;${gss.metadata.name}`)).toBe(false);
    const rules = (parseYaml(find(objs, "ConfigMap", "adapter-config").data["config.yaml"]) as { rules: Obj[] }).rules;
    const floor = rules.find((r) => r.name.as === STATE_FLOOR_METRIC) as Obj;
    expect(floor.seriesQuery).toBe(`${STATE_FLOOR_METRIC}{namespace!="",${label}!=""}`);
    expect(floor.resources.overrides[label]).toEqual({ group: "tkex.tencent.com", resource: "gamestatefulset" });
    // Everything else is the base's rules.
    const baseRules = (parseYaml(find(base(), "ConfigMap", "adapter-config").data["config.yaml"]) as { rules: Obj[] })
      .rules;
    expect(rules.find((r) => r.name.as === LOAD_METRIC)).toEqual(baseRules.find((r) => r.name.as === LOAD_METRIC));
    const baseFloor = baseRules.find((r) => r.name.as === STATE_FLOOR_METRIC) as Obj;
    expect({ ...floor, seriesQuery: "", resources: {} }).toEqual({ ...baseFloor, seriesQuery: "", resources: {} });
  });
});

// CI must not pass by skipping: there a missing kubectl is a failure.
describe.skipIf(!hasKubectl() && !process.env.CI)("the GameDeployment overlay as kubectl kustomize builds it", () => {
  const built = () => parseAllDocuments(kustomize(GD_OVERLAY)).map((d) => d.toJS() as Obj);
  const base = () => parseAllDocuments(kustomize(DEPLOY)).map((d) => d.toJS() as Obj);
  const find = (objs: Obj[], kind: string, name?: string): Obj => {
    const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
    expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
    return found[0] as Obj;
  };

  it("every object validates, and the workload is a GameDeployment with the hook", () => {
    const objs = built();
    for (const o of objs) expect(problems(o), `${o.kind}/${o.metadata.name}`).toEqual([]);
    expect(objs.some((o) => o.kind === "StatefulSet" || o.kind === "HorizontalPodAutoscaler")).toBe(false);
    const gd = find(objs, "GameDeployment");
    expect(gd.spec.preDeleteUpdateStrategy).toEqual({
      hook: { templateName: find(objs, "HookTemplate").metadata.name },
    });
    // Broken control: a StatefulSet-only field is rejected by this CRD.
    expect(problems({ ...gd, spec: { ...gd.spec, serviceName: "x" } })).toEqual(["spec.serviceName: unknown field"]);
  });

  it("is the base StatefulSet's pod template, plus the annotations file for the application", () => {
    const gd = find(built(), "GameDeployment");
    const sts = find(base(), "StatefulSet");
    const tmpl = structuredClone(sts.spec.template);
    delete tmpl.spec.containers[0].lifecycle;
    tmpl.spec.volumes.push({
      name: "podinfo",
      downwardAPI: { items: [{ path: "annotations", fieldRef: { fieldPath: "metadata.annotations" } }] },
    });
    expect(gd.spec.template).toEqual(tmpl);
    expect(gd.spec.selector).toEqual(sts.spec.selector);
    expect(gd.spec.replicas).toBeUndefined();
  });

  it("the GPA scales the GameDeployment on the base HPA's load metric, bounds and behaviour", () => {
    const objs = built();
    const gpa = find(objs, "GeneralPodAutoscaler");
    const gd = find(objs, "GameDeployment");
    const hpa = find(base(), "HorizontalPodAutoscaler");
    expect(gpa.spec.scaleTargetRef).toEqual({ apiVersion: gd.apiVersion, kind: gd.kind, name: gd.metadata.name });
    expect(gpa.spec.metric.metrics).toEqual((hpa.spec.metrics as Obj[]).filter((m) => m.type === "Pods"));
    expect(gpa.spec.behavior).toEqual(hpa.spec.behavior);
    expect([gpa.spec.minReplicas, gpa.spec.maxReplicas]).toEqual([hpa.spec.minReplicas, hpa.spec.maxReplicas]);
  });

  it("the agent config is the base's with the pod IP as relay address, no scaling reports, deletion cost on", () => {
    const env = {
      POD_NAME: "hopway-agent-x7k2p",
      POD_NAMESPACE: "hopway",
      POD_IP: "10.1.2.3",
      HOPWAY_TOKEN: "test-token",
      HOPWAY_LOCAL_API_TOKEN: "0123456789abcdef-local",
    };
    const cfg = (objs: Obj[]) => parseConfig(find(objs, "ConfigMap", "hopway-agent").data["agent.yaml"], env);
    const gdConfig = cfg(built());
    const baseConfig = cfg(base());
    expect(gdConfig.records[0]).toMatchObject({ gateway: [{ address: "ipv4://10.1.2.3:1234" }] });
    expect(gdConfig.scaling.workload).toBe("");
    expect(gdConfig.scaling.deletion_cost.enabled).toBe(true);
    const strip = (c: typeof baseConfig) => ({
      ...c,
      records: [],
      scaling: { ...c.scaling, workload: "", min_replicas: 0, max_replicas: 0 },
    });
    expect(strip(gdConfig)).toEqual(strip(baseConfig));
    // The Role the deletion-cost patcher needs is there.
    expect(find(built(), "Role").rules).toEqual(find(base(), "Role").rules);
  });
});

// bcs-gamedeployment-operator's scale-in order (see the fixtures' README):
// pods sorted by the node's cost, then ascending by the pod's
// controller.kubernetes.io/pod-deletion-cost parsed as a float, a missing or
// unparsable annotation sorting last; the first `diff` pods go.
function gameDeploymentPicks(pods: { name: string; cost?: string }[], diff: number): string[] {
  const cost = (c?: string) => {
    const v = c === undefined ? Number.NaN : Number.parseFloat(c);
    return Number.isNaN(v) ? Number.MAX_VALUE : v;
  };
  return [...pods]
    .sort((a, b) => cost(a.cost) - cost(b.cost))
    .slice(0, diff)
    .map((p) => p.name);
}

describe("GameDeployment scale-in with the agent's pod-deletion-cost", () => {
  it("removes the pod whose application holds nothing, before pods with state, whatever their names", () => {
    const pods = [
      { name: "hopway-agent-b2x4q", cost: String(deletionCostBucket(true, 5000)) },
      { name: "hopway-agent-kz9wd", cost: String(deletionCostBucket(true, 3)) },
      { name: "hopway-agent-7tq2m", cost: String(deletionCostBucket(false, 0)) },
      { name: "hopway-agent-fresh" }, // annotation not written yet: last
    ];
    expect(gameDeploymentPicks(pods, 1)).toEqual(["hopway-agent-7tq2m"]);
    expect(gameDeploymentPicks(pods, 2)).toEqual(["hopway-agent-7tq2m", "hopway-agent-kz9wd"]);
    expect(gameDeploymentPicks(pods, 4).at(-1)).toBe("hopway-agent-fresh");
  });
});

/** A Kubernetes quantity as the controllers read it (plain or milli). */
function quantity(q: string | number): number {
  if (typeof q === "number") return q;
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(q);
  if (!m) throw new Error(`unsupported quantity ${q}`);
  return Number(m[1]) / (m[2] ? 1000 : 1);
}

describe("the GPA's metric formulas on the shipped targets", () => {
  const gpa = readDocs(join(OVERLAY, "gpa.yaml"))[0] as Obj;
  const spec = (type: "Pods" | "Object") => (gpa.spec.metric.metrics as Obj[]).find((m) => m.type === type) as Obj;
  const floorTarget = quantity(spec("Object").object.target.averageValue);
  const loadTarget = quantity(spec("Pods").pods.target.averageValue);
  const floor = (value: number, target: { averageValue: number } | { value: number } = { averageValue: floorTarget }) =>
    ({ type: "Object", name: STATE_FLOOR_METRIC, target, value }) as const;
  const load = (values: number[]): HpaMetric => ({
    type: "Pods",
    name: LOAD_METRIC,
    target: { averageValue: loadTarget },
    values,
  });

  // bcs-general-pod-autoscaler's replica_calculator is the HPA's (see the
  // fixtures' README): GetObjectPerPodMetricReplicas for Object/AverageValue,
  // GetObjectMetricReplicas for Object/Value, calcPlainMetricReplicas for Pods.
  it("6 replicas and a state floor of 3: Object/AverageValue proposes 3, never 18 (what Value would give)", () => {
    expect(spec("Object").object.target.type).toBe("AverageValue");
    expect(floorTarget).toBe(1);
    expect(hpaMetricProposal(floor(3), 6)).toBe(3);
    // Had the overlay used type Value: ceil(6 ready × 3 / 1) = 18, a scale-out and not a floor.
    expect(hpaMetricProposal(floor(3, { value: floorTarget }), 6)).toBe(18);
    // The metric is ordinal + 1: with ordinal 3 the highest pod holding state, 4 pods stay.
    expect(hpaMetricProposal(floor(3 + 1), 6)).toBe(4);
  });

  it("load: ceil(sum / 0.7); the GPA takes the larger proposal, so the floor holds whatever the load", () => {
    expect(loadTarget).toBe(0.7);
    expect(hpaMetricProposal(load([0.1, 0.1, 0.1, 0.1, 0.1, 0.1]), 6)).toBe(1);
    const model = new HpaModel({
      minReplicas: gpa.spec.minReplicas,
      maxReplicas: gpa.spec.maxReplicas,
      behavior: gpa.spec.behavior,
    });
    const step = model.step(0, 6, [load([0.1, 0.1, 0.1, 0.1, 0.1, 0.1]), floor(4)]);
    expect(step.recommended).toBe(4);
  });

  it("unlike the HPA, the GPA scales in on load when the floor metric is missing: the hook must hold the pod", () => {
    // The floor metric cannot be computed (here: a target the formula rejects, as a missing series would).
    const broken: HpaMetric[] = [load([0.1, 0.1, 0.1, 0.1, 0.1, 0.1]), { ...floor(4), target: { averageValue: 0 } }];
    // The HPA: one metric invalid and the rest asking to scale in → no change.
    const hpa = new HpaModel({ minReplicas: 2, maxReplicas: 20 });
    expect(hpa.step(0, 6, broken)).toMatchObject({ replicas: 6, limitedBy: "invalid_metric" });
    // The GPA's computeReplicasForMetrics: the max over the valid metrics; only all invalid is an error.
    const gpaRecommendation = (ms: HpaMetric[], current: number): number | undefined => {
      const valid = ms.flatMap((m) => {
        try {
          return [hpaMetricProposal(m, current)];
        } catch {
          return [];
        }
      });
      return valid.length ? Math.max(...valid) : undefined;
    };
    expect(gpaRecommendation(broken, 6)).toBe(1); // then minReplicas 2: pods 2..5 are asked to go
  });
});
