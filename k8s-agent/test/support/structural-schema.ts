// Validates an object against a CustomResourceDefinition's openAPIV3Schema the
// way an API server with strict field validation (kubectl's default since
// Kubernetes 1.27) treats a create: unknown fields are errors, not silently
// pruned. It covers the keywords the CRDs in test/fixtures/crds use (type,
// properties, required, additionalProperties, items, enum, format, pattern,
// anyOf with x-kubernetes-int-or-string, nullable, list types) and fails
// loudly on any other keyword, so a new CRD cannot be half-checked.
import { parseAllDocuments } from "yaml";

export interface Schema {
  type?: "object" | "array" | "string" | "integer" | "number" | "boolean";
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: Schema | boolean;
  items?: Schema;
  enum?: unknown[];
  format?: string;
  pattern?: string;
  anyOf?: Schema[];
  nullable?: boolean;
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  "x-kubernetes-embedded-resource"?: boolean;
  "x-kubernetes-list-type"?: "atomic" | "set" | "map";
  "x-kubernetes-list-map-keys"?: string[];
  "x-kubernetes-map-type"?: "atomic" | "granular";
}

const KNOWN = new Set<string>([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "enum",
  "format",
  "pattern",
  "anyOf",
  "nullable",
  "default",
  "description",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "minItems",
  "maxItems",
  "x-kubernetes-int-or-string",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-embedded-resource",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
]);

export interface SchemaError {
  /** JSON-path-like location, e.g. `spec.metric.metrics[1].object.target.averageValue`. */
  path: string;
  message: string;
}

export interface CrdVersion {
  group: string;
  kind: string;
  version: string;
  scope: "Namespaced" | "Cluster";
  schema: Schema;
  subresources: { scale?: Record<string, string>; status?: Record<string, never> };
}

interface CrdDoc {
  apiVersion: string;
  kind: string;
  spec: {
    group: string;
    scope: "Namespaced" | "Cluster";
    names: { kind: string };
    versions: Array<{
      name: string;
      served: boolean;
      storage: boolean;
      schema: { openAPIV3Schema: Schema };
      subresources?: CrdVersion["subresources"];
    }>;
  };
}

/** Every served version of every CRD in a YAML text. */
export function loadCrds(text: string): CrdVersion[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as CrdDoc | null)
    .filter((d): d is CrdDoc => d?.kind === "CustomResourceDefinition")
    .flatMap((crd) => {
      if (crd.apiVersion !== "apiextensions.k8s.io/v1") throw new Error(`${crd.spec.names.kind}: not a v1 CRD`);
      return crd.spec.versions
        .filter((v) => v.served)
        .map((v) => ({
          group: crd.spec.group,
          kind: crd.spec.names.kind,
          version: v.name,
          scope: crd.spec.scope,
          schema: v.schema.openAPIV3Schema,
          subresources: v.subresources ?? {},
        }));
    });
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const at = (path: string, key: string) => (path ? `${path}.${key}` : key);

/**
 * Errors of `obj` against the CRD version whose group/version/kind it names.
 * The root's apiVersion, kind and metadata are checked as the API server
 * does for every object (the schema's own `metadata` entry is not consulted:
 * the server handles ObjectMeta itself).
 */
export function validateAgainstCrd(obj: unknown, crd: CrdVersion): SchemaError[] {
  const errors: SchemaError[] = [];
  if (!isObject(obj)) return [{ path: "", message: "not an object" }];
  if (obj.apiVersion !== `${crd.group}/${crd.version}`)
    errors.push({ path: "apiVersion", message: `want ${crd.group}/${crd.version}, got ${String(obj.apiVersion)}` });
  if (obj.kind !== crd.kind) errors.push({ path: "kind", message: `want ${crd.kind}, got ${String(obj.kind)}` });
  errors.push(...validateObjectMeta(obj.metadata, crd.scope === "Namespaced"));
  const { metadata: _m, ...rest } = obj;
  const schema: Schema = { ...crd.schema, properties: { ...crd.schema.properties } };
  delete schema.properties?.metadata;
  validate(rest, schema, "", errors);
  return errors;
}

function validateObjectMeta(meta: unknown, namespaced: boolean): SchemaError[] {
  const errors: SchemaError[] = [];
  if (!isObject(meta)) return [{ path: "metadata", message: "required object" }];
  const allowed = new Set(["name", "namespace", "labels", "annotations", "generateName", "finalizers"]);
  for (const k of Object.keys(meta))
    if (!allowed.has(k)) errors.push({ path: `metadata.${k}`, message: "unknown field (not settable on create)" });
  if (typeof meta.name !== "string" || meta.name.length > 253 || !DNS1123_SUBDOMAIN.test(meta.name))
    errors.push({ path: "metadata.name", message: "must be a DNS subdomain" });
  if (
    meta.namespace !== undefined &&
    (typeof meta.namespace !== "string" || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(meta.namespace))
  )
    errors.push({ path: "metadata.namespace", message: "must be a DNS label" });
  if (!namespaced && meta.namespace !== undefined)
    errors.push({ path: "metadata.namespace", message: "cluster-scoped kind" });
  for (const field of ["labels", "annotations"] as const) {
    const m = meta[field];
    if (m === undefined) continue;
    if (!isObject(m)) {
      errors.push({ path: `metadata.${field}`, message: "must be a string map" });
      continue;
    }
    for (const [k, v] of Object.entries(m)) {
      if (!QUALIFIED_NAME.test(k)) errors.push({ path: `metadata.${field}.${k}`, message: "invalid key" });
      if (typeof v !== "string") errors.push({ path: `metadata.${field}.${k}`, message: "value must be a string" });
      else if (field === "labels" && (v.length > 63 || !LABEL_VALUE.test(v)))
        errors.push({ path: `metadata.labels.${k}`, message: "invalid label value" });
    }
  }
  return errors;
}

function validate(value: unknown, schema: Schema, path: string, errors: SchemaError[]): void {
  for (const k of Object.keys(schema))
    if (!KNOWN.has(k)) throw new Error(`${path || "<root>"}: schema keyword '${k}' is not supported by this validator`);
  if (value === null) {
    if (!schema.nullable) errors.push({ path, message: "null is not allowed" });
    return;
  }
  if (schema["x-kubernetes-int-or-string"]) {
    if (!(typeof value === "string" || (typeof value === "number" && Number.isInteger(value)))) {
      errors.push({ path, message: "must be an integer or a string" });
      return;
    }
    if (typeof value === "string" && schema.pattern && !new RegExp(schema.pattern).test(value))
      errors.push({ path, message: `'${value}' does not match ${schema.pattern}` });
    return;
  }
  if (schema.anyOf) throw new Error(`${path}: anyOf outside x-kubernetes-int-or-string is not supported`);
  if (schema.enum && !schema.enum.some((e) => e === value))
    errors.push({ path, message: `must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(", ")}` });

  switch (schema.type) {
    case "string":
      if (typeof value !== "string")
        return void errors.push({ path, message: `must be a string, got ${typeof value}` });
      checkString(value, schema, path, errors);
      return;
    case "integer":
      if (typeof value !== "number" || !Number.isInteger(value))
        return void errors.push({ path, message: `must be an integer, got ${JSON.stringify(value)}` });
      checkNumber(value, schema, path, errors);
      return;
    case "number":
      if (typeof value !== "number" || !Number.isFinite(value))
        return void errors.push({ path, message: `must be a number, got ${JSON.stringify(value)}` });
      checkNumber(value, schema, path, errors);
      return;
    case "boolean":
      if (typeof value !== "boolean") errors.push({ path, message: `must be a boolean, got ${JSON.stringify(value)}` });
      return;
    case "array":
      if (!Array.isArray(value)) return void errors.push({ path, message: "must be an array" });
      checkArray(value, schema, path, errors);
      return;
    case "object":
      if (!isObject(value)) return void errors.push({ path, message: "must be an object" });
      checkObject(value, schema, path, errors);
      return;
    case undefined:
      if (!schema["x-kubernetes-preserve-unknown-fields"])
        throw new Error(`${path}: a structural schema needs a type here`);
      return;
  }
}

function checkString(value: string, schema: Schema, path: string, errors: SchemaError[]): void {
  if (schema.pattern && !new RegExp(schema.pattern).test(value))
    errors.push({ path, message: `'${value}' does not match ${schema.pattern}` });
  if (schema.minLength !== undefined && value.length < schema.minLength)
    errors.push({ path, message: `shorter than ${schema.minLength}` });
  if (schema.maxLength !== undefined && value.length > schema.maxLength)
    errors.push({ path, message: `longer than ${schema.maxLength}` });
  if (schema.format === "date-time" && !DATE_TIME.test(value))
    errors.push({ path, message: "not an RFC 3339 date-time" });
  if (schema.format === "byte" && !BASE64.test(value)) errors.push({ path, message: "not base64" });
}

function checkNumber(value: number, schema: Schema, path: string, errors: SchemaError[]): void {
  if (schema.format === "int32" && (value < -(2 ** 31) || value > 2 ** 31 - 1))
    errors.push({ path, message: "out of int32 range" });
  if (schema.format === "int64" && !Number.isSafeInteger(value)) errors.push({ path, message: "out of int64 range" });
  if (schema.minimum !== undefined && value < schema.minimum) errors.push({ path, message: `below ${schema.minimum}` });
  if (schema.maximum !== undefined && value > schema.maximum) errors.push({ path, message: `above ${schema.maximum}` });
}

function checkArray(value: unknown[], schema: Schema, path: string, errors: SchemaError[]): void {
  if (schema.minItems !== undefined && value.length < schema.minItems)
    errors.push({ path, message: `fewer than ${schema.minItems} items` });
  if (schema.maxItems !== undefined && value.length > schema.maxItems)
    errors.push({ path, message: `more than ${schema.maxItems} items` });
  if (!schema.items) throw new Error(`${path}: array without items`);
  for (const [i, item] of value.entries()) validate(item, schema.items, `${path}[${i}]`, errors);
  const listType = schema["x-kubernetes-list-type"];
  if (listType === "set" || listType === "map") {
    const keys = schema["x-kubernetes-list-map-keys"] ?? [];
    const seen = new Set<string>();
    for (const item of value) {
      const key = JSON.stringify(
        listType === "map" && isObject(item) ? keys.map((k) => (item as Record<string, unknown>)[k]) : item,
      );
      if (seen.has(key)) errors.push({ path, message: `duplicate entry ${key} in a list of type ${listType}` });
      seen.add(key);
    }
  }
}

function checkObject(value: Record<string, unknown>, schema: Schema, path: string, errors: SchemaError[]): void {
  for (const r of schema.required ?? [])
    if (value[r] === undefined) errors.push({ path: at(path, r), message: "required field is missing" });
  const props = schema.properties;
  const extra = schema.additionalProperties;
  if (schema["x-kubernetes-embedded-resource"]) {
    for (const k of ["apiVersion", "kind"])
      if (typeof value[k] !== "string") errors.push({ path: at(path, k), message: "embedded resource needs it" });
  }
  for (const [k, v] of Object.entries(value)) {
    if (props && k in props) validate(v, props[k] as Schema, at(path, k), errors);
    else if (isObject(extra) || extra === true) {
      if (isObject(extra)) validate(v, extra as Schema, at(path, k), errors);
    } else if (schema["x-kubernetes-embedded-resource"] && (k === "apiVersion" || k === "kind" || k === "metadata")) {
      // an embedded object's type and ObjectMeta are the server's, like the root's
    } else if (!schema["x-kubernetes-preserve-unknown-fields"]) {
      errors.push({ path: at(path, k), message: "unknown field" });
    }
  }
}
