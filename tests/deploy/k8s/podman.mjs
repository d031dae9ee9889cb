// The scripted transform that lets `podman kube play` (podman 4.3) run the
// real manifests on one machine (docs/deploy.md, "What the Kubernetes test
// changes"):
//   node podman.mjs OVERLAY_DIR PARAMS_JSON OUT_DIR
// renders OVERLAY_DIR (render.mjs) and writes OUT_DIR/play.yaml and
// OUT_DIR/secrets.json ([{name, file}] for `podman secret create`).
// PARAMS_JSON: {"nodes": [{"name", "http", "admin", "rtmp", "quic", "datadir"}],
//   "controller": {"http", "control"}, "dsn", "pg_socket", "pg_socket_mount",
//   "agent_extra": {top-level agent configuration merged in}}.
// What changes, and why:
// - Services, the example PostgreSQL (StatefulSet) and its claims are left out:
//   kube play runs neither Services nor claims; the test's own PostgreSQL is used.
// - Every pod shares the host's network (kube play --network host) on loopback,
//   so each gets its own ports: the ConfigMaps' listen addresses are rewritten,
//   one ConfigMap per agent pod, and the controller runs one replica.
// - The Deployment becomes one Pod (podman 4.3 ignores the pod annotations of
//   a Deployment's template, see below), the DaemonSet one Pod per stand-in
//   node (kube play has no nodes to schedule on); spec.nodeName and the
//   other downward-API fields become literal values, and $(VAR) references in
//   env values are expanded (podman does neither).
// - Secrets become podman secrets, two per Secret: for env (a JSON map of
//   base64 values) and for volumes (`<name>-vol`, YAML with the values as they
//   are), as podman 4.3 reads them; secret volumes get `optional: false`,
//   without which podman 4.3 crashes.
// - hostPath data directories point at the test's temporary directories; the
//   controller gets the PostgreSQL socket as a hostPath volume.
// - Container ports are left out: on the host's network podman refuses them.
// - Init containers are kept after they ran (an annotation): podman 4.3 fails
//   a pod when it removes one too early.
// - Probes are left out (podman runs them as health checks with tools the
//   image does not have); the test polls /healthz and /readyz itself.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { render } from "./render.mjs";

const [dir, paramsJson, out] = process.argv.slice(2);
const P = JSON.parse(paramsJson);
const objs = render(dir);
const byName = (kind, n) => objs.find((o) => o.kind === kind && o.metadata.name === n);
const play = [];
const secrets = [];

function expandEnv(c, literal) {
  const vals = {};
  for (const e of c.env || []) {
    if (e.valueFrom && e.valueFrom.fieldRef) {
      const f = e.valueFrom.fieldRef.fieldPath;
      if (!(f in literal)) throw new Error(`no stand-in for fieldRef ${f}`);
      delete e.valueFrom;
      e.value = literal[f];
    }
    if (typeof e.value === "string") {
      e.value = e.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v) => (v in vals ? vals[v] : m));
      vals[e.name] = e.value;
    }
  }
}

// podman 4.3 removes a "once" init container while it may still count as
// running and then fails the pod ("cannot remove container ... as it is
// running"): keep them ("always": run at each pod start, as Kubernetes does).
const INIT_ALWAYS = { "io.podman.annotations.init.container.type": "always" };

function podSpec(spec, literal) {
  delete spec.terminationGracePeriodSeconds;
  for (const c of [...(spec.containers || []), ...(spec.initContainers || [])]) {
    delete c.readinessProbe;
    delete c.livenessProbe;
    delete c.startupProbe;
    delete c.ports;   // on the host's network: podman refuses port mappings
    expandEnv(c, literal);
  }
  for (const v of spec.volumes || []) {
    if (v.secret) {
      v.secret.secretName += "-vol";
      v.secret.optional = false;
    }
  }
  return spec;
}

function withConfig(cm, key, edit, name) {
  const copy = JSON.parse(JSON.stringify(cm));
  const cfg = YAML.parse(copy.data[key]);
  edit(cfg);
  copy.data[key] = YAML.stringify(cfg);
  copy.metadata.name = name;
  delete copy.metadata.namespace;
  return copy;
}

// Secrets
for (const s of objs.filter((o) => o.kind === "Secret")) {
  const data = { ...(s.data || {}) };
  if (s.metadata.name === "cascade-controller") data.dsn = Buffer.from(P.dsn).toString("base64");
  const envFile = path.join(out, `${s.metadata.name}.json`);
  fs.writeFileSync(envFile, JSON.stringify(data), { mode: 0o600 });
  const raw = Object.fromEntries(Object.entries(data).map(([k, v]) =>
    [k, Buffer.from(v, "base64").toString("utf8")]));
  const volFile = path.join(out, `${s.metadata.name}-vol.yaml`);
  fs.writeFileSync(volFile, YAML.stringify({ apiVersion: "v1", kind: "Secret",
    metadata: { name: s.metadata.name }, data: raw }), { mode: 0o600 });
  secrets.push({ name: s.metadata.name, file: envFile }, { name: `${s.metadata.name}-vol`, file: volFile });
}

// The controller: one replica on the given ports, PostgreSQL's socket mounted
const dep = byName("Deployment", "cascade-controller");
const ctlUrl = `tls+tcp://127.0.0.1:${P.controller.control}`;
play.push(withConfig(byName("ConfigMap", "cascade-controller"), "controller.yaml", (cfg) => {
  cfg.http.listenaddr = `127.0.0.1:${P.controller.http}`;
  cfg.control.listenaddr = ctlUrl;
}, "cascade-controller"));
const ctlSpec = podSpec(JSON.parse(JSON.stringify(dep.spec.template.spec)),
  { "status.podIP": "127.0.0.1" });
ctlSpec.volumes.push({ name: "pgsocket", hostPath: { path: P.pg_socket, type: "Socket" } });
ctlSpec.containers[0].volumeMounts.push({ name: "pgsocket", mountPath: P.pg_socket_mount });
play.push({ apiVersion: "v1", kind: "Pod",
  metadata: { name: "cascade-controller", labels: dep.spec.template.metadata.labels,
    annotations: INIT_ALWAYS }, spec: ctlSpec });

// The agents: one Pod per stand-in node
const ds = byName("DaemonSet", "cascade-agent");
const agentCm = byName("ConfigMap", "cascade-agent");
for (const n of P.nodes) {
  const cmName = `cascade-agent-${n.name}`;
  play.push(withConfig(agentCm, "agent.yaml", (cfg) => {
    cfg.controller.url = ctlUrl;
    cfg.http.listenaddr = `127.0.0.1:${n.http}`;
    cfg.http.adminaddr = `127.0.0.1:${n.admin}`;
    cfg.rtmp.listenaddr = `127.0.0.1:${n.rtmp}`;
    cfg.cascadeserver.quic.listenaddr = `127.0.0.1:${n.quic}`;
    Object.assign(cfg, P.agent_extra || {});
  }, cmName));
  const t = JSON.parse(JSON.stringify(ds.spec.template));
  const spec = podSpec(t.spec, { "spec.nodeName": n.name, "status.hostIP": "127.0.0.1" });
  for (const c of spec.containers) {
    for (const e of c.env || []) {
      if (e.name === "CASCADE_NODE_ADVERTISE") e.value = `127.0.0.1:${n.quic}`;
    }
  }
  for (const v of spec.volumes) {
    if (v.configMap && v.configMap.name === "cascade-agent") v.configMap.name = cmName;
    if (v.hostPath) v.hostPath.path = n.datadir;
  }
  play.push({ apiVersion: "v1", kind: "Pod",
    metadata: { name: `cascade-agent-${n.name}`, labels: t.metadata.labels, annotations: INIT_ALWAYS },
    spec });
}
fs.writeFileSync(path.join(out, "play.yaml"), play.map((o) => YAML.stringify(o)).join("---\n"));
fs.writeFileSync(path.join(out, "secrets.json"), JSON.stringify(secrets));
