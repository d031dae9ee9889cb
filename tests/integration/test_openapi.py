#!/usr/bin/env python3
"""The OpenAPI description (docs/api.md, "OpenAPI"): controller/openapi.json describes exactly
the routes the controller has, and is served at GET /api/openapi.json.

Checked: `cascade-controller --print-routes` (made from the route table in controller/http.c)
and the document's paths and methods agree both ways, each difference named (a route added to
the table without a description fails here with its method and path); each operation's role
(x-cascade-role) is the table's; the document has the shape OpenAPI 3.0 requires (checked
here in Python: versions, info, unique operationIds, path parameters declared, every $ref
resolving, responses with descriptions, security schemes that exist, the {code, message, data}
envelope on JSON successes); the served document equals the file and needs no token."""

import json
import os
import re
import unittest

import harness

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "controller",
                   "openapi.json")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Bodies that are not the envelope: Prometheus text, this document, the relay (the node's own
# answer), the event stream.
NOT_ENVELOPE = {("get", "/metrics"), ("get", "/api/openapi.json")}


def load_doc():
    with open(DOC, encoding="utf-8") as f:
        return json.load(f)


def printed_routes():
    rc, out, err = harness.run_controller(["--print-routes"])
    assert rc == 0, err
    routes = {}
    for line in out.splitlines():
        m = re.match(r"^([A-Z]+) (/\S*) (none|viewer|admin)$", line)
        assert m, "unreadable --print-routes line %r" % line
        routes[(m.group(1).lower(), m.group(2))] = m.group(3)
    return routes


def resolve(doc, ref):
    assert ref.startswith("#/"), "only local $refs: %s" % ref
    node = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, "unresolved $ref %s" % ref
        node = node[part]
    return node


def walk_refs(doc, node, where, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                try:
                    resolve(doc, v)
                except AssertionError as e:
                    out.append("%s: %s" % (where, e))
            else:
                walk_refs(doc, v, where + "/" + k, out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk_refs(doc, v, "%s/%d" % (where, i), out)


def deref(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(doc, node["$ref"])
    return node


class OpenApiTest(unittest.TestCase):
    def test_routes_match_both_ways(self):
        doc = load_doc()
        described = {}
        for path, item in doc["paths"].items():
            for m in METHODS:
                if m in item:
                    described[(m, path)] = item[m].get("x-cascade-role", "none")
        routes = printed_routes()
        undescribed = sorted("%s %s" % (m.upper(), p) for m, p in set(routes) - set(described))
        phantom = sorted("%s %s" % (m.upper(), p) for m, p in set(described) - set(routes))
        self.assertEqual(undescribed, [], "routes of the controller missing from "
                         "controller/openapi.json: %s" % ", ".join(undescribed))
        self.assertEqual(phantom, [], "controller/openapi.json describes routes the controller "
                         "does not have: %s" % ", ".join(phantom))
        wrong = sorted("%s %s: table %s, document %s" % (m.upper(), p, routes[(m, p)],
                                                         described[(m, p)])
                       for m, p in routes if routes[(m, p)] != described[(m, p)])
        self.assertEqual(wrong, [], "roles differ")

    def test_structure(self):
        doc = load_doc()
        problems = []
        self.assertRegex(doc.get("openapi", ""), r"^3\.0\.\d+$")
        self.assertIsInstance(doc.get("info"), dict)
        self.assertTrue(doc["info"].get("title"))
        self.assertIsInstance(doc["info"].get("version"), str)
        self.assertIsInstance(doc.get("paths"), dict)
        schemes = doc.get("components", {}).get("securitySchemes", {})
        self.assertEqual(schemes.get("bearer", {}).get("scheme"), "bearer")
        walk_refs(doc, doc, "#", problems)
        op_ids = []
        for path, item in doc["paths"].items():
            if not path.startswith("/"):
                problems.append("path %r does not start with /" % path)
            templ = set(re.findall(r"\{([^}]+)\}", path))
            for k in item:
                if k not in METHODS and k not in ("parameters", "summary", "description"):
                    problems.append("%s: unknown key %r" % (path, k))
            for m in METHODS:
                if m not in item:
                    continue
                o, where = item[m], "%s %s" % (m.upper(), path)
                op_ids.append(o.get("operationId"))
                if not o.get("operationId"):
                    problems.append("%s: no operationId" % where)
                params = [deref(doc, p)
                          for p in item.get("parameters", []) + o.get("parameters", [])]
                for p in params:
                    if p.get("in") not in ("path", "query", "header", "cookie"):
                        problems.append("%s: parameter %r: bad 'in'" % (where, p.get("name")))
                    if "schema" not in p and "content" not in p:
                        problems.append("%s: parameter %r: no schema" % (where, p.get("name")))
                    if p.get("in") == "path" and p.get("required") is not True:
                        problems.append("%s: path parameter %r not required"
                                        % (where, p.get("name")))
                declared = {p.get("name") for p in params if p.get("in") == "path"}
                if declared != templ:
                    problems.append("%s: path parameters %s, template %s"
                                    % (where, sorted(declared), sorted(templ)))
                resp = o.get("responses")
                if not isinstance(resp, dict) or not resp:
                    problems.append("%s: no responses" % where)
                    continue
                for code, r in resp.items():
                    if not re.match(r"^([1-5]\d\d|[1-5]XX|default)$", code):
                        problems.append("%s: response code %r" % (where, code))
                    if not deref(doc, r).get("description"):
                        problems.append("%s %s: response without description" % (where, code))
                for sec in o.get("security", doc.get("security", [])):
                    for name in sec:
                        if name not in schemes:
                            problems.append("%s: unknown security scheme %r" % (where, name))
                # roles and security agree: a public route has no security, the rest bearer
                role = o.get("x-cascade-role", "none")
                sec = o.get("security", doc.get("security", []))
                if (role == "none") != (sec == []):
                    problems.append("%s: role %s but security %r" % (where, role, sec))
                if "requestBody" in o and "content" not in o["requestBody"]:
                    problems.append("%s: requestBody without content" % where)
                # successes in JSON are the envelope
                if (m, path) in NOT_ENVELOPE or path.startswith("/api/relay/"):
                    continue
                for code, r in resp.items():
                    if not code.startswith("2"):
                        continue
                    js = deref(doc, r).get("content", {}).get("application/json")
                    if js is None:
                        problems.append("%s %s: no application/json answer" % (where, code))
                        continue
                    sch = deref(doc, js.get("schema", {}))
                    if set(sch.get("properties", {})) < {"code", "message", "data"}:
                        problems.append("%s %s: answer is not the envelope" % (where, code))
        dup = sorted({i for i in op_ids if op_ids.count(i) > 1})
        if dup:
            problems.append("duplicate operationIds %s" % dup)
        self.assertEqual(problems, [], "\n".join(problems))


class ServedTest(harness.ControllerTestCase):
    config = {"control": {"listenaddr": ""}}

    def test_served_without_token(self):
        st, h, body = self.ctl.request("GET", "/api/openapi.json")
        self.assertEqual(st, 200, body)
        self.assertEqual(h.get("Content-Type"), "application/json")
        self.assertEqual(body, load_doc())
        # with a token too, and HEAD
        st, _, body = self.api("GET", "/api/openapi.json")
        self.assertEqual(body, load_doc())
        st, _, _ = self.ctl.request("HEAD", "/api/openapi.json")
        self.assertEqual(st, 200)
        st, h, body = self.ctl.request("POST", "/api/openapi.json", body={})
        self.err((st, h, body), 405)
        # other /api/ paths still need a token before saying whether they exist
        st, _, body = self.ctl.request("GET", "/api/openapi.yaml")
        self.err((st, None, body), 401)


if __name__ == "__main__":
    unittest.main()
