// The subset of kustomize that deploy/kubernetes uses, so that the manifests
// can be built and checked offline without kubectl: resources (files and
// directories with a kustomization.yaml), namespace, labels (metadata only),
// images (newName/newTag) and secretGenerator / configMapGenerator (literals,
// files, envs) without name suffixes. Anything else in a kustomization is an
// error, not silently ignored.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";

const KNOWN = new Set(["apiVersion", "kind", "resources", "namespace", "labels", "images",
  "secretGenerator", "configMapGenerator", "generatorOptions"]);

export function loadDocs(file) {
  const text = fs.readFileSync(file, "utf8");
  return YAML.parseAllDocuments(text).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    return d.toJS();
  }).filter((o) => o !== null);
}

function generated(kind, g, dir) {
  const data = {};
  for (const lit of g.literals || []) {
    const i = lit.indexOf("=");
    data[lit.slice(0, i)] = lit.slice(i + 1);
  }
  for (const f of g.files || []) {
    const [key, rel] = f.includes("=") ? f.split("=", 2) : [path.basename(f), f];
    data[key] = fs.readFileSync(path.join(dir, rel), "utf8");
  }
  for (const e of g.envs || []) {
    for (const line of fs.readFileSync(path.join(dir, e), "utf8").split("\n")) {
      if (!line.trim() || line.startsWith("#")) continue;
      const i = line.indexOf("=");
      data[line.slice(0, i)] = line.slice(i + 1);
    }
  }
  const obj = { apiVersion: "v1", kind, metadata: { name: g.name } };
  if (kind === "Secret") {
    obj.type = g.type || "Opaque";
    obj.data = Object.fromEntries(Object.entries(data).map(([k, v]) =>
      [k, Buffer.from(v).toString("base64")]));
  } else {
    obj.data = data;
  }
  return obj;
}

function setImage(c, images) {
  for (const im of images) {
    const [name, tag] = c.image.split(/:(?=[^/]*$)/);
    if (name === im.name) c.image = `${im.newName || name}:${im.newTag || tag || "latest"}`;
  }
}

export function render(dir) {
  const kfile = path.join(dir, "kustomization.yaml");
  const k = loadDocs(kfile)[0];
  for (const key of Object.keys(k)) {
    if (!KNOWN.has(key)) throw new Error(`${kfile}: ${key} is not supported by this renderer`);
  }
  if (k.generatorOptions && k.generatorOptions.disableNameSuffixHash !== true) {
    throw new Error(`${kfile}: generatorOptions: only disableNameSuffixHash: true is supported`);
  }
  if ((k.secretGenerator || k.configMapGenerator) && !k.generatorOptions) {
    throw new Error(`${kfile}: generators need generatorOptions.disableNameSuffixHash: true here`);
  }
  let objs = [];
  for (const r of k.resources || []) {
    const p = path.join(dir, r);
    objs = objs.concat(fs.statSync(p).isDirectory() ? render(p) : loadDocs(p));
  }
  for (const g of k.secretGenerator || []) objs.push(generated("Secret", g, dir));
  for (const g of k.configMapGenerator || []) objs.push(generated("ConfigMap", g, dir));
  for (const o of objs) {
    o.metadata = o.metadata || {};
    if (k.namespace) o.metadata.namespace = k.namespace;
    for (const l of k.labels || []) {
      o.metadata.labels = { ...(o.metadata.labels || {}), ...l.pairs };
      if (l.includeSelectors || l.includeTemplates) {
        throw new Error(`${kfile}: labels with includeSelectors/includeTemplates not supported`);
      }
    }
    const pod = o.spec && o.spec.template ? o.spec.template.spec : o.kind === "Pod" ? o.spec : null;
    if (pod && k.images) {
      for (const c of [...(pod.containers || []), ...(pod.initContainers || [])]) setImage(c, k.images);
    }
  }
  return objs;
}

if (process.argv[1] && process.argv[1].endsWith("render.mjs")) {
  const objs = render(process.argv[2]);
  process.stdout.write(objs.map((o) => YAML.stringify(o)).join("---\n"));
}
