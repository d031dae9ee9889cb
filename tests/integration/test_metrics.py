#!/usr/bin/env python3
"""GET /metrics: Prometheus text with request counters by route/method/status, a latency
histogram, DB pool gauges and node counts that follow the registry."""

import re
import unittest

import harness

CLIENTS = "/api/cascade/clients"
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] for every sample; raises on a malformed line."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise AssertionError("malformed metrics line: %r" % line)
        labels = dict(LABEL_RE.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


class MetricsTest(harness.ControllerTestCase):
    config = {"database": {"poolsize": 3}}

    def scrape(self):
        st, hdrs, body = self.ctl.request("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(hdrs.get("Content-Type", "").startswith("text/plain"),
                        hdrs.get("Content-Type"))
        self.assertIsInstance(body, str)
        return body, parse_metrics(body)

    def value(self, samples, name, **labels):
        vals = [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]
        self.assertEqual(len(vals), 1, "%s%r: %d series" % (name, labels, len(vals)))
        return vals[0]

    def series(self, samples, name):
        return [(l, v) for n, l, v in samples if n == name]

    def test_format_and_types(self):
        text, samples = self.scrape()
        for name in ("cascade_http_requests_total", "cascade_http_request_duration_seconds",
                     "cascade_db_pool_size", "cascade_db_pool_in_use", "cascade_nodes_total",
                     "cascade_nodes_online"):
            self.assertRegex(text, r"(?m)^# TYPE %s (counter|gauge|histogram)$" % name)
        self.assertRegex(text, r"(?m)^# TYPE cascade_http_requests_total counter$")
        self.assertRegex(text, r"(?m)^# TYPE cascade_http_request_duration_seconds histogram$")

    def test_request_counter(self):
        def total(samples, status, route_pred):
            return sum(v for l, v in self.series(samples, "cascade_http_requests_total")
                       if l.get("method") == "GET" and l.get("status") == status
                       and route_pred(l.get("route", "")))
        by_id = lambda r: "clients" in r and r != CLIENTS  # noqa: E731
        listing = lambda r: r == CLIENTS  # noqa: E731

        def counted(base, n):
            """A scrape once the controller counted |n| more 404s than |base| (a request is
            counted when its reply is complete, which may be just after the client has it)."""
            got = {}

            def ok():
                got["s"] = self.scrape()[1]
                return total(got["s"], "404", by_id) - total(base, "404", by_id) >= n
            harness.wait_for(ok, 5, what="%d requests counted" % n)
            return got["s"]

        _, s0 = self.scrape()
        for _ in range(2):
            self.err(self.api("GET", CLIENTS + "/123456"), 404)
        s1 = counted(s0, 2)
        for _ in range(3):
            self.err(self.api("GET", CLIENTS + "/123456"), 404)
        for _ in range(2):
            self.assertEqual(self.api("GET", CLIENTS)[0], 200)
        s2 = counted(s1, 3)
        for l, _ in self.series(s2, "cascade_http_requests_total"):
            for k in ("route", "method", "status"):
                self.assertIn(k, l, l)
            self.assertNotIn("123456", l["route"], "raw ids in the route label: unbounded series")
        self.assertEqual(total(s2, "404", by_id) - total(s1, "404", by_id), 3)
        harness.wait_for(lambda: total(self.scrape()[1], "200", listing) - total(s1, "200", listing)
                         >= 2, 5, what="listings counted")
        self.assertEqual(total(self.scrape()[1], "200", listing) - total(s1, "200", listing), 2)

    def test_latency_histogram(self):
        self.assertEqual(self.api("GET", CLIENTS)[0], 200)
        _, samples = self.scrape()
        buckets = self.series(samples, "cascade_http_request_duration_seconds_bucket")
        self.assertTrue(buckets, "no histogram buckets")
        groups = {}
        for l, v in buckets:
            key = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
            le = float("inf") if l["le"] == "+Inf" else float(l["le"])
            groups.setdefault(key, []).append((le, v))
        for key, bs in groups.items():
            bs.sort()
            self.assertEqual(bs[-1][0], float("inf"), "no +Inf bucket for %r" % (key,))
            counts = [v for _, v in bs]
            self.assertEqual(counts, sorted(counts), "buckets not cumulative for %r" % (key,))
            count = [v for l, v in self.series(samples, "cascade_http_request_duration_seconds_count")
                     if tuple(sorted(l.items())) == key]
            if count:
                self.assertEqual(count[0], counts[-1])
        self.assertTrue(any(v > 0 for bs in groups.values() for _, v in bs))

    def test_pool_gauges(self):
        _, samples = self.scrape()
        self.assertEqual(self.value(samples, "cascade_db_pool_size"), 3)
        in_use = self.value(samples, "cascade_db_pool_in_use")
        self.assertGreaterEqual(in_use, 0)
        self.assertLessEqual(in_use, 3)

    def gauge_becomes(self, name, want):
        """The gauge may be refreshed on a timer: wait (with a deadline) for it to read |want|."""
        got = []

        def check():
            _, samples = self.scrape()
            got[:] = [self.value(samples, name)]
            return got[0] == want
        try:
            harness.wait_for(check, 5, what="%s == %s" % (name, want))
        except TimeoutError:
            self.fail("%s is %r, expected %r" % (name, got, want))

    def test_node_gauges_follow_registry(self):
        base = len(self.list_all())
        self.gauge_becomes("cascade_nodes_total", base)
        made = [self.create() for _ in range(3)]
        self.gauge_becomes("cascade_nodes_total", base + 3)
        self.gauge_becomes("cascade_nodes_online", 0)
        self.ok(self.api("DELETE", "%s/%d" % (CLIENTS, made[0]["id"])))
        self.gauge_becomes("cascade_nodes_total", base + 2)

    def test_no_token_needed(self):
        st, _, _ = self.ctl.request("GET", "/metrics")
        self.assertEqual(st, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
