// Offline checks of the Kubernetes manifests (tests/deploy/test_kubernetes.py):
//   node check.mjs DIR IMAGE
// renders DIR (render.mjs) and checks every object against Kubernetes'
// schemas (kubernetes-models: types, required fields, formats) and for fields
// the schema does not know (a misspelt key is silently dropped by a real API
// server's client-side apply in some versions: here it is an error), then the
// project's own rules: workload selectors match their pod template's labels,
// every Service selects a workload, every image is IMAGE, every ConfigMap or
// Secret a pod uses exists (or is one the operator makes: OPERATOR_SECRETS),
// probes name a port the container has.
import { render } from "./render.mjs";

const OPERATOR_SECRETS = new Set(["cascade-controller", "cascade-ca", "cascade-agent"]);
const SCHEMAS = {
  "apps/v1/Deployment": "IoK8sApiAppsV1Deployment",
  "apps/v1/DaemonSet": "IoK8sApiAppsV1DaemonSet",
  "apps/v1/StatefulSet": "IoK8sApiAppsV1StatefulSet",
  "v1/Service": "IoK8sApiCoreV1Service",
  "v1/ConfigMap": "IoK8sApiCoreV1ConfigMap",
  "v1/Secret": "IoK8sApiCoreV1Secret",
  "v1/Pod": "IoK8sApiCoreV1Pod",
};

// Wraps |v| so that every property the validator reads is recorded: the
// compiled validators test each property the schema defines (and walk maps),
// so a key never read is one the schema does not know.
function tracked(v, where, seen) {
  if (v === null || typeof v !== "object") return v;
  if (seen.proxies.has(v)) return seen.proxies.get(v);
  const reads = new Set();
  seen.push({ where, obj: v, reads });
  const p = new Proxy(v, {
    get(t, k, r) {
      if (typeof k === "string") reads.add(k);
      const x = Reflect.get(t, k, r);
      return typeof k === "string" ? tracked(x, `${where}.${k}`, seen) : x;
    },
    ownKeys(t) {
      for (const k of Reflect.ownKeys(t)) if (typeof k === "string") reads.add(k);
      return Reflect.ownKeys(t);
    },
  });
  seen.proxies.set(v, p);
  return p;
}

async function schemaErrors(o, name) {
  const key = `${o.apiVersion}/${o.kind}`;
  if (!SCHEMAS[key]) return [`${name}: no schema for ${key} in this check`];
  const mod = await import(`kubernetes-models/_schemas/${SCHEMAS[key]}`);
  const seen = [];
  seen.proxies = new WeakMap();
  const ok = mod.validate(tracked(o, name, seen));
  const errs = ok ? [] : mod.validate.errors.map((e) =>
    `${name}${e.instancePath.replace(/\//g, ".")}: ${e.message || e.keyword} ${JSON.stringify(e.params)}`);
  const reported = new Set();
  for (const { where, obj, reads } of seen) {
    if (Array.isArray(obj)) continue;
    for (const k of Object.keys(obj)) {
      const p = `${where}.${k}`;
      if (!reads.has(k) && !reported.has(p)) {
        reported.add(p);
        errs.push(`${p}: unknown field`);
      }
    }
  }
  return errs;
}

function podSpec(o) {
  if (o.kind === "Pod") return o.spec;
  return o.spec && o.spec.template ? o.spec.template.spec : null;
}

function projectErrors(objs, image) {
  const errs = [];
  const has = (kind, n) => objs.some((o) => o.kind === kind && o.metadata.name === n);
  const templates = [];
  for (const o of objs) {
    const name = `${o.kind}/${o.metadata.name}`;
    const pod = podSpec(o);
    if (!pod) continue;
    if (o.kind !== "Pod") {
      const sel = (o.spec.selector || {}).matchLabels || {};
      const labels = (o.spec.template.metadata || {}).labels || {};
      templates.push(labels);
      for (const [k, v] of Object.entries(sel)) {
        if (labels[k] !== v) errs.push(`${name}: selector ${k}=${v} does not match its pod template`);
      }
      if (!Object.keys(sel).length) errs.push(`${name}: empty selector`);
    } else {
      templates.push(o.metadata.labels || {});
    }
    for (const c of [...(pod.containers || []), ...(pod.initContainers || [])]) {
      if (c.image !== image) errs.push(`${name}: container ${c.name} image ${c.image}, not ${image}`);
      const ports = new Set((c.ports || []).map((p) => p.name));
      for (const pr of ["readinessProbe", "livenessProbe", "startupProbe"]) {
        const port = c[pr] && c[pr].httpGet && c[pr].httpGet.port;
        if (typeof port === "string" && !ports.has(port)) errs.push(`${name}: ${pr} port ${port} is not a port of ${c.name}`);
      }
      for (const e of c.env || []) {
        const ref = e.valueFrom && (e.valueFrom.secretKeyRef || e.valueFrom.configMapKeyRef);
        if (e.valueFrom && e.valueFrom.secretKeyRef && !has("Secret", ref.name) && !OPERATOR_SECRETS.has(ref.name)) {
          errs.push(`${name}: env ${e.name} uses Secret ${ref.name}, which nothing makes`);
        }
      }
    }
    for (const v of pod.volumes || []) {
      if (v.configMap && !has("ConfigMap", v.configMap.name)) errs.push(`${name}: volume ${v.name}: no ConfigMap ${v.configMap.name}`);
      if (v.secret && !has("Secret", v.secret.secretName) && !OPERATOR_SECRETS.has(v.secret.secretName)) {
        errs.push(`${name}: volume ${v.name}: no Secret ${v.secret.secretName}`);
      }
    }
    const mounted = new Set((pod.volumes || []).map((v) => v.name));
    for (const c of [...(pod.containers || []), ...(pod.initContainers || [])]) {
      for (const m of c.volumeMounts || []) {
        if (!mounted.has(m.name)) errs.push(`${name}: container ${c.name} mounts ${m.name}, which is no volume`);
      }
    }
  }
  for (const o of objs.filter((x) => x.kind === "Service")) {
    const sel = o.spec.selector || {};
    if (!templates.some((l) => Object.entries(sel).every(([k, v]) => l[k] === v))) {
      errs.push(`Service/${o.metadata.name}: its selector matches no workload's pods`);
    }
  }
  return errs;
}

const [dir, image] = process.argv.slice(2);
let errs = [];
try {
  const objs = render(dir);
  for (const o of objs) errs = errs.concat(await schemaErrors(o, `${o.kind}/${o.metadata.name}`));
  errs = errs.concat(projectErrors(objs, image));
  console.log(`${objs.length} objects: ${objs.map((o) => `${o.kind}/${o.metadata.name}`).join(", ")}`);
} catch (e) {
  errs.push(String(e.message || e));
}
for (const e of errs) console.log(`ERROR ${e}`);
process.exit(errs.length ? 1 : 0);
