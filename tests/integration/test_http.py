"""The HTTP/JSON front against a real imapqd: every endpoint and error status, leases, attempts,
delays, long polls woken by IMAP, and a drain by mixed IMAP and HTTP workers."""
import base64
import http.client
import imaplib
import json
import re
import socket
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

import harness


class Api:
    """A small client: one keep-alive connection, JSON in and out."""

    def __init__(self, port, token):
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None, token=True, ctype=None, headers=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + (self.token if token is True else token)
        data = body
        if body is not None and not isinstance(body, (bytes, str)):
            data = json.dumps(body)
            ctype = ctype or "application/json"
        if ctype:
            h["Content-Type"] = ctype
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=h)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        parsed = raw
        if resp.getheader("Content-Type", "").startswith("application/json") and raw:
            parsed = json.loads(raw)
        return resp.status, resp, parsed

    def close(self):
        self.conn.close()


class HttpTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = harness.Daemon().start()
        cls.token = cls.daemon.credentials()[2]
        cls.port = cls.daemon.ports["http"]
        cls.counter = 0

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        cls.daemon.cleanup()

    def setUp(self):
        self.api = Api(self.port, self.token)
        self.addCleanup(self.api.close)

    def queue(self, settings=None):
        """Creates a fresh queue and returns its name."""
        type(self).counter += 1
        name = "q%d" % type(self).counter
        status, _, body = self.api.call("PUT", "/v1/queues/" + name, settings)
        self.assertEqual(status, 201, body)
        return name

    def enqueue(self, q, payload, path_suffix=""):
        status, _, body = self.api.call("POST", "/v1/queues/%s/messages%s" % (q, path_suffix),
                                        payload)
        self.assertEqual(status, 201, body)
        return body["id"]

    def claim(self, q, **params):
        status, _, body = self.api.call("POST", "/v1/queues/%s/claims" % q, params)
        self.assertEqual(status, 200, body)
        return body["messages"]

    def settle(self, q, job_id, verb, **fields):
        return self.api.call("POST", "/v1/queues/%s/messages/%s/%s" % (q, job_id, verb), fields)

    def assertError(self, result, status, code=None):
        got, _, body = result
        self.assertEqual(got, status, body)
        self.assertIn("error", body)
        self.assertIn("message", body["error"])
        if code:
            self.assertEqual(body["error"]["code"], code)


class Basics(HttpTestCase):
    def test_healthz_needs_no_token(self):
        status, resp, body = self.api.call("GET", "/healthz", token=False)
        self.assertEqual((status, body), (200, {"status": "ok"}))

    def test_tokens(self):
        status, resp, body = self.api.call("GET", "/v1/queues", token=False)
        self.assertEqual(status, 401)
        self.assertEqual(body["error"]["code"], "unauthorized")
        self.assertTrue(resp.getheader("WWW-Authenticate").startswith("Bearer"))
        status, resp, _ = self.api.call("GET", "/v1/queues", token="wrong")
        self.assertEqual(status, 401)
        self.assertIn('error="invalid_token"', resp.getheader("WWW-Authenticate"))
        self.assertEqual(self.api.call("GET", "/metrics", token=False)[0], 401)
        # A refused token with a body is answered before the body is read.
        self.assertEqual(self.api.call("POST", "/v1/queues/x/messages", {"a": 1},
                                       token="wrong")[0], 401)

    def test_unknown_routes_and_methods(self):
        self.assertError(self.api.call("GET", "/v1/nothing"), 404, "not_found")
        self.assertError(self.api.call("GET", "/v1/queues/q/what/ever"), 404)
        q = self.queue()
        status, resp, body = self.api.call("DELETE", "/v1/queues/%s/claims" % q)
        self.assertEqual(status, 405)
        self.assertEqual(resp.getheader("Allow"), "POST")
        self.assertEqual(body["error"]["code"], "method_not_allowed")
        self.assertError(self.api.call("POST", "/v1/queues/%s/messages/abc/ack" % q, {}), 400)
        self.assertError(self.api.call("PUT", "/v1/queues/bad%00name"), 400, "invalid")
        self.assertError(self.api.call("PUT", "/v1/queues/x%2Fdead"), 400)

    def test_curl_reads_the_api(self):
        base = "http://127.0.0.1:%d" % self.port
        auth = ["-H", "Authorization: Bearer " + self.token]
        out = subprocess.run(["curl", "-s", "-X", "PUT"] + auth + [base + "/v1/queues/curlq"],
                             capture_output=True, text=True, timeout=30).stdout
        self.assertEqual(json.loads(out)["name"], "curlq")
        out = subprocess.run(["curl", "-s"] + auth + ["-H", "Content-Type: application/json",
                                                      "-d", '{"task":"x"}',
                                                      base + "/v1/queues/curlq/messages"],
                             capture_output=True, text=True, timeout=30).stdout
        self.assertTrue(out.endswith("\n"))
        self.assertEqual(json.loads(out)["queue"], "curlq")
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"] + auth +
                           ["-d", "{}", "-H", "Content-Type: application/json",
                            base + "/v1/queues/nosuch/claims"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout, "404")
        out = subprocess.run(["curl", "-s", base + "/healthz"], capture_output=True, text=True,
                             timeout=30).stdout
        self.assertEqual(json.loads(out)["status"], "ok")

    def test_urllib_client(self):
        req = urllib.request.Request("http://127.0.0.1:%d/v1/queues" % self.port,
                                     headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=30) as resp:
            self.assertIn("queues", json.loads(resp.read()))
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen("http://127.0.0.1:%d/v1/queues" % self.port, timeout=30)
        self.assertEqual(cm.exception.code, 401)


class Queues(HttpTestCase):
    def test_create_inspect_change_delete(self):
        q = self.queue({"lease": 7})
        status, _, body = self.api.call("GET", "/v1/queues/" + q)
        self.assertEqual(status, 200)
        self.assertEqual(body["settings"]["lease"], 7)
        self.assertEqual(body["stats"]["ready"], 0)
        self.assertIsInstance(body["stats"]["highestmodseq"], str)
        status, _, body = self.api.call("PUT", "/v1/queues/" + q)
        self.assertEqual((status, body["settings"]["lease"]), (200, 7))
        status, _, body = self.api.call("PUT", "/v1/queues/" + q, {"max_attempts": 9})
        self.assertEqual(status, 200)
        self.assertEqual(body["settings"], {"lease": 7, "max_attempts": 9,
                                            "retention": body["settings"]["retention"],
                                            "max_messages": 10000000})
        status, _, body = self.api.call("GET", "/v1/queues")
        self.assertIn(q, [x["name"] for x in body["queues"]])
        self.assertEqual(self.api.call("DELETE", "/v1/queues/" + q)[0], 204)
        self.assertError(self.api.call("GET", "/v1/queues/" + q), 404, "not_found")
        self.assertError(self.api.call("DELETE", "/v1/queues/" + q), 404)
        self.assertError(self.api.call("POST", "/v1/queues/%s/messages" % q, {"a": 1}), 404)

    def test_bad_settings(self):
        q = self.queue()
        for body in ({"lease": 0}, {"lease": "x"}, {"leas": 5}, [1], {"lease": 1.5},
                     {"max_attempts": 10 ** 12}):
            self.assertError(self.api.call("PUT", "/v1/queues/" + q, body), 400, "invalid")
        self.assertError(self.api.call("PUT", "/v1/queues/" + q, "{nope",
                                       ctype="application/json"), 400)

    def test_slash_in_queue_names(self):
        status, _, body = self.api.call("PUT", "/v1/queues/team%2Fjobs")
        self.assertEqual((status, body["name"]), (201, "team/jobs"))
        self.enqueue("team%2Fjobs", {"x": 1})
        self.assertEqual(len(self.claim("team%2Fjobs")), 1)

    def test_purge(self):
        q = self.queue()
        for i in range(3):
            self.enqueue(q, {"i": i})
        held = self.claim(q)
        status, _, body = self.api.call("POST", "/v1/queues/%s/purge" % q)
        self.assertEqual((status, body), (200, {"purged": 2}))
        self.assertEqual(self.settle(q, held[0]["id"], "ack",
                                     receipt=held[0]["receipt"])[0], 204)
        self.assertError(self.api.call("POST", "/v1/queues/nosuch/purge"), 404)

    def test_changes_feed(self):
        q = self.queue()
        a = self.enqueue(q, {"a": 1})
        b = self.enqueue(q, {"b": 1})
        status, _, feed = self.api.call("GET", "/v1/queues/%s/changes?since=0" % q)
        self.assertEqual(status, 200)
        self.assertIsInstance(feed["highestmodseq"], str)
        self.assertEqual(sorted(x["id"] for x in feed["changed"]), sorted([a, b]))
        self.assertEqual(feed["removed"], "")
        mark = feed["highestmodseq"]
        job = self.claim(q)[0]
        self.settle(q, job["id"], "ack", receipt=job["receipt"])
        status, _, feed = self.api.call("GET", "/v1/queues/%s/changes?since=%s" % (q, mark))
        self.assertEqual(status, 200)
        self.assertIn(job["id"], re.split("[,:]", feed["removed"]))
        self.assertGreater(int(feed["highestmodseq"]), int(mark))
        self.assertError(self.api.call("GET", "/v1/queues/%s/changes?since=x" % q), 400)

    def test_metrics(self):
        q = self.queue()
        self.enqueue(q, {"m": 1})
        status, resp, text = self.api.call("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(resp.getheader("Content-Type").startswith("text/plain"))
        text = text.decode()
        self.assertRegex(text, r'imapq_http_requests_total\{route="messages",code="2xx"\} \d+')
        self.assertRegex(text, r"imapq_journal_fsync_seconds_count \d+")
        self.assertRegex(text, r"imapq_journal_fsync_seconds_sum [0-9.]+")
        needed = int(re.search(r"^imapq_journal_needed_bytes (\d+)$", text, re.M).group(1))
        self.assertGreater(needed, 0)
        self.assertRegex(text, r"(?m)^imapq_journal_compactions_total \d+$")
        self.assertRegex(text, r"(?m)^imapq_journal_carried_bytes_total \d+$")
        self.assertRegex(text, r"(?m)^imapq_journal_damaged_bodies_total 0$")
        self.assertIn("imapq_http_long_polls", text)


class Jobs(HttpTestCase):
    def test_json_job_round_trip_keeps_exact_text(self):
        q = self.queue()
        raw = '{"big": 12345678901234567890, "s": "\\u00e9t\\u00e9", "list": [1, 2]}'
        status, _, body = self.api.call("POST", "/v1/queues/%s/messages" % q, raw,
                                        ctype="application/json")
        self.assertEqual(status, 201, body)
        self.assertEqual(body["queue"], q)
        self.assertIsInstance(body["id"], str)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("POST", "/v1/queues/%s/claims" % q, "{}",
                     {"Authorization": "Bearer " + self.token})
        text = conn.getresponse().read()
        conn.close()
        self.assertIn(b'"big": 12345678901234567890', text)
        job = json.loads(text)["messages"][0]
        self.assertEqual(job["id"], body["id"])
        self.assertEqual(job["content_type"], "application/json")
        self.assertEqual(job["body"]["s"], "été")
        self.assertEqual(job["body"]["big"], 12345678901234567890)
        self.assertEqual(job["attempts"], 1)
        self.assertRegex(job["receipt"], r"^\d+-\d+$")
        self.assertRegex(job["enqueued_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertIn("lease_until", job)

    def test_text_and_binary_bodies(self):
        q = self.queue()
        self.api.call("POST", "/v1/queues/%s/messages" % q, "hello world", ctype="text/plain")
        self.api.call("POST", "/v1/queues/%s/messages" % q, b"\xff\x00\x01",
                      ctype="application/octet-stream")
        jobs = self.claim(q, max=2)
        self.assertEqual(jobs[0]["content_type"], "text/plain")
        self.assertEqual(jobs[0]["body"], "hello world")
        self.assertEqual(jobs[1]["body_encoding"], "base64")
        self.assertEqual(base64.b64decode(jobs[1]["body"]), b"\xff\x00\x01")

    def test_batch(self):
        q = self.queue()
        batch = {"messages": [
            {"body": {"n": 1}},
            {"body": "plain", "content_type": "text/plain"},
            {"body": base64.b64encode(b"\x80\x81").decode(), "content_type": "image/x-raw",
             "body_encoding": "base64"},
            {"body": [1, 2], "delay": 60},
        ]}
        status, _, body = self.api.call("POST", "/v1/queues/%s/messages" % q, batch)
        self.assertEqual(status, 201, body)
        self.assertEqual(len(body["messages"]), 4)
        jobs = self.claim(q, max=10)
        self.assertEqual([j["id"] for j in jobs], [m["id"] for m in body["messages"][:3]])
        self.assertEqual(jobs[0]["body"], {"n": 1})
        self.assertEqual(jobs[1]["body"], "plain")
        self.assertEqual(base64.b64decode(jobs[2]["body"]), b"\x80\x81")
        for bad in ({"messages": []}, {"messages": [{"nobody": 1}]},
                    {"messages": [{"body": 1, "content_type": "text/plain"}]},
                    {"messages": [{"body": "!!", "content_type": "a/b",
                                   "body_encoding": "base64"}]},
                    {"messages": [{"body": 1}] * 1001}):
            self.assertError(self.api.call("POST", "/v1/queues/%s/messages" % q, bad), 400)

    def test_bad_bodies(self):
        q = self.queue()
        path = "/v1/queues/%s/messages" % q
        self.assertError(self.api.call("POST", path, "{bad", ctype="application/json"), 400)
        self.assertError(self.api.call("POST", path, "[" * 100 + "]" * 100,
                                       ctype="application/json"), 400)
        self.assertError(self.api.call("POST", path, b'"\xff"', ctype="application/json"), 400)
        self.assertError(self.api.call("POST", path + "?delay=-1", {"a": 1}), 400)
        self.assertError(self.api.call("POST", "/v1/queues/%s/claims" % q, {"max": 0}), 400)
        self.assertError(self.api.call("POST", "/v1/queues/%s/claims" % q, {"wait": 31}), 400)
        self.assertError(self.api.call("POST", "/v1/queues/%s/claims" % q, {"mx": 1}), 400)
        # JSON over the limit is refused once it has streamed in (chunked: no length given).
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        chunks = [b'{"pad":"'] + [b"x" * 65536] * 65 + [b'"}']
        conn.request("POST", path, body=iter(chunks), encode_chunked=True,
                     headers={"Authorization": "Bearer " + self.token,
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 413)
        self.assertEqual(json.loads(resp.read())["error"]["code"], "too_big")
        conn.close()

    def test_abandoned_long_poll_counts_as_aborted(self):
        q = self.queue()
        body = json.dumps({"wait": 20})
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(("POST /v1/queues/%s/claims HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                       "Content-Length: %d\r\n\r\n%s" % (q, self.token, len(body), body)).encode())
            time.sleep(0.5)
        # The server notices the closed connection on its next look: a job wakes the poll.
        self.enqueue(q, {"wake": 1})
        pattern = r'(?m)^imapq_http_requests_total\{route="claims",code="aborted"\} (\d+)$'
        deadline = time.time() + 20
        while True:
            text = self.api.call("GET", "/metrics")[2].decode()
            found = re.search(pattern, text)
            if found or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertIsNotNone(found, text)
        self.assertGreaterEqual(int(found.group(1)), 1)
        self.assertNotRegex(text, r'imapq_http_requests_total\{route="claims",code="5xx"\}')
        # The job that woke the abandoned poll is still there for the next worker.
        self.assertEqual(len(self.claim(q, wait=0)), 1)

    def test_announced_oversized_body_is_refused_at_once(self):
        q = self.queue()
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(("POST /v1/queues/%s/messages HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\nContent-Type: text/plain\r\n"
                       "Content-Length: 20000000\r\n\r\n" % (q, self.token)).encode())
            head = s.recv(4096).decode()
        self.assertTrue(head.startswith("HTTP/1.1 413"), head)
        self.assertIn("too_big", head)

    def test_claim_ack_nack_extend(self):
        q = self.queue()
        a = self.enqueue(q, {"job": "a"})
        claimed = self.claim(q, wait=0)
        status, _, body = self.api.call("GET", "/v1/queues/%s/messages?state=claimed" % q)
        held = body["messages"][0]
        self.assertEqual(held["id"], a)
        receipt = held["receipt"]
        self.assertEqual(receipt, claimed[0]["receipt"])
        # A stale or malformed receipt is refused.
        stale = receipt.split("-")[0] + "-1"
        self.assertError(self.settle(q, a, "ack", receipt=stale), 409, "modified")
        self.assertError(self.settle(q, a, "ack", receipt="nonsense"), 400)
        self.assertError(self.settle(q, a, "ack"), 400)
        self.assertError(self.api.call("POST", "/v1/queues/%s/messages/%s/ack" % (q, a)), 400)
        # Extend renews: the old receipt is stale, the new one works.
        status, _, body = self.settle(q, a, "extend", receipt=receipt, lease=60)
        self.assertEqual(status, 200, body)
        self.assertNotEqual(body["receipt"], receipt)
        self.assertError(self.settle(q, a, "nack", receipt=receipt), 409)
        # Nack returns it to the queue at once.
        self.assertEqual(self.settle(q, a, "nack", receipt=body["receipt"])[0], 204)
        job = self.claim(q)[0]
        self.assertEqual((job["id"], job["attempts"]), (a, 2))
        self.assertEqual(self.settle(q, a, "ack", receipt=job["receipt"])[0], 204)
        self.assertError(self.settle(q, a, "ack", receipt=job["receipt"]), 404, "no_message")
        self.assertEqual(self.claim(q), [])

    def test_peek(self):
        q = self.queue()
        ids = [self.enqueue(q, {"i": i}) for i in range(3)]
        status, _, body = self.api.call("GET", "/v1/queues/%s/messages?limit=2&body=true" % q)
        self.assertEqual(status, 200)
        self.assertEqual([m["id"] for m in body["messages"]], ids[:2])
        self.assertEqual(body["messages"][0]["body"], {"i": 0})
        self.assertEqual(body["messages"][0]["state"], "ready")
        self.assertEqual(len(self.claim(q, max=3)), 3)  # peeking claimed nothing
        self.assertError(self.api.call("GET", "/v1/queues/%s/messages?state=odd" % q), 400)
        self.assertError(self.api.call("GET", "/v1/queues/%s/messages?limit=0" % q), 400)

    def test_replies_larger_than_the_print_buffer(self):
        # Replies are printed into a 4 KiB buffer per pool thread; larger ones take memory
        # of their own. Both kinds, in turn on one connection, must come out whole.
        q = self.queue()
        big = {"pad": "x" * 6000, "tail": "end"}
        ids = [self.enqueue(q, {"i": 0}), self.enqueue(q, big), self.enqueue(q, {"i": 2})]
        for limit, want in ((1, [{"i": 0}]), (3, [{"i": 0}, big, {"i": 2}]), (1, [{"i": 0}])):
            status, _, body = self.api.call(
                "GET", "/v1/queues/%s/messages?limit=%d&body=true" % (q, limit))
            self.assertEqual(status, 200)
            self.assertEqual([m["body"] for m in body["messages"]], want)
        jobs = self.claim(q, max=3)
        self.assertEqual([j["id"] for j in jobs], ids)
        self.assertEqual([j["body"] for j in jobs], [{"i": 0}, big, {"i": 2}])
        self.assertTrue(all(j["state"] == "claimed" and j["receipt"] for j in jobs))
        for j in jobs:
            self.assertEqual(self.settle(q, j["id"], "ack", receipt=j["receipt"])[0], 204)
        # Every reply length around the buffer's edge (a claim of one job grows by a byte per
        # byte of its body): each is whole, never cut or padded.
        lengths = set()
        for pad in range(3700, 4100):
            payload = {"pad": "y" * pad}
            job_id = self.enqueue(q, payload)
            status, resp, body = self.api.call("POST", "/v1/queues/%s/claims" % q, {"max": 1})
            self.assertEqual(status, 200)
            lengths.add(int(resp.getheader("Content-Length")))
            self.assertEqual([(m["id"], m["body"]) for m in body["messages"]],
                             [(job_id, payload)], pad)
            receipt = body["messages"][0]["receipt"]
            self.assertEqual(self.settle(q, job_id, "ack", receipt=receipt)[0], 204)
        self.assertLess(min(lengths), 4095)
        self.assertGreater(max(lengths), 4096)
        self.assertEqual(len(lengths), 400)  # one length per body size: none cut short

    def test_lease_expiry_redelivers(self):
        q = self.queue()
        a = self.enqueue(q, {"lease": "short"})
        first = self.claim(q, lease=1)[0]
        self.assertEqual(self.claim(q), [])
        deadline = time.monotonic() + 10
        second = []
        while not second and time.monotonic() < deadline:
            second = self.claim(q, wait=2)
        self.assertEqual(second[0]["id"], a)
        self.assertEqual(second[0]["attempts"], 2)
        self.assertError(self.settle(q, a, "ack", receipt=first["receipt"]), 409, "modified")
        self.assertEqual(self.settle(q, a, "ack", receipt=second[0]["receipt"])[0], 204)

    def test_max_attempts_dead_letters_and_requeue(self):
        q = self.queue({"max_attempts": 2})
        a = self.enqueue(q, {"fails": True})
        for _ in range(2):
            job = self.claim(q)[0]
            self.assertEqual(self.settle(q, a, "nack", receipt=job["receipt"])[0], 204)
        self.assertEqual(self.claim(q), [])
        status, _, body = self.api.call("GET", "/v1/queues/%s/messages?state=dead" % q)
        self.assertEqual(len(body["messages"]), 1)
        dead_id = body["messages"][0]["id"]
        status, _, body = self.api.call("GET", "/v1/queues/" + q)
        self.assertEqual(body["stats"]["dead"], 1)
        status, _, body = self.api.call("POST", "/v1/queues/%s/dead/%s/requeue" % (q, dead_id))
        self.assertEqual((status, body), (200, {"requeued": 1}))
        job = self.claim(q)[0]
        self.assertEqual(job["attempts"], 1)
        self.assertEqual(self.settle(q, job["id"], "nack", receipt=job["receipt"])[0], 204)
        job = self.claim(q)[0]
        self.settle(q, job["id"], "nack", receipt=job["receipt"])
        status, _, body = self.api.call("POST", "/v1/queues/%s/dead/requeue" % q)
        self.assertEqual((status, body), (200, {"requeued": 1}))
        self.assertError(self.api.call("POST", "/v1/queues/%s/dead/999/requeue" % q), 404)

    def test_delays_hold(self):
        q = self.queue()
        self.enqueue(q, {"later": True}, "?delay=2")
        self.assertEqual(self.claim(q), [])
        status, _, body = self.api.call("GET", "/v1/queues/%s/messages?state=delayed" % q)
        self.assertEqual(len(body["messages"]), 1)
        self.assertIn("not_before", body["messages"][0])
        start = time.monotonic()
        jobs = self.claim(q, wait=10)
        self.assertEqual(len(jobs), 1)
        self.assertLess(time.monotonic() - start, 6)
        job = self.claim(q)
        self.assertEqual(job, [])


class LongPolls(HttpTestCase):
    def claim_in_thread(self, q, wait):
        result = {}

        def run():
            api = Api(self.port, self.token)
            start = time.monotonic()
            result["status"], _, result["body"] = api.call(
                "POST", "/v1/queues/%s/claims" % q, {"wait": wait})
            result["elapsed"] = time.monotonic() - start
            api.close()
        t = threading.Thread(target=run)
        t.start()
        return t, result

    def test_wait_times_out_empty(self):
        q = self.queue()
        start = time.monotonic()
        self.assertEqual(self.claim(q, wait=1), [])
        self.assertGreaterEqual(time.monotonic() - start, 0.9)

    def test_wakes_on_http_enqueue(self):
        q = self.queue()
        t, result = self.claim_in_thread(q, 20)
        time.sleep(0.5)
        a = self.enqueue(q, {"wake": 1})
        t.join(30)
        self.assertEqual(result["status"], 200)
        self.assertEqual(result["body"]["messages"][0]["id"], a)
        self.assertLess(result["elapsed"], 5)

    def test_wakes_on_imap_append(self):
        q = self.queue()
        t, result = self.claim_in_thread(q, 20)
        time.sleep(0.5)
        m = self.daemon.imaplib()
        m.append(q, None, None, b"Subject: from imap\r\nContent-Type: text/plain\r\n\r\nhi\r\n")
        m.logout()
        t.join(30)
        self.assertEqual(result["status"], 200, result)
        jobs = result["body"]["messages"]
        self.assertEqual(len(jobs), 1)
        self.assertLess(result["elapsed"], 5)
        self.assertEqual(jobs[0]["body"].strip(), "hi")

    def test_many_parked_polls_share_few_threads(self):
        q = self.queue()
        polls = [self.claim_in_thread(q, 20) for _ in range(40)]
        time.sleep(1)
        status, _, text = self.api.call("GET", "/metrics")
        parked = int(re.search(r"imapq_http_long_polls (\d+)", text.decode()).group(1))
        self.assertGreaterEqual(parked, 30)
        self.api.call("POST", "/v1/queues/%s/messages" % q,
                      {"messages": [{"body": i} for i in range(40)]})
        got = []
        for t, result in polls:
            t.join(30)
            got += result["body"]["messages"]
        self.assertEqual(len(got), 40)
        self.assertEqual(len({j["id"] for j in got}), 40)


class Connections(HttpTestCase):
    """The first connections go to the poll daemon, the rest to the epoll daemon; both serve
    durable replies and long polls, and closing gives the poll daemon its room back."""

    def counts(self):
        status, _, text = self.api.call("GET", "/metrics")
        self.assertEqual(status, 200)
        text = text.decode()

        def value(pattern):
            return int(re.search(pattern + r" (\d+)", text).group(1))
        return (value(r'imapq_http_connections\{daemon="poll"\}'),
                value(r'imapq_http_connections\{daemon="epoll"\}'),
                value(r"imapq_http_poll_connections_max"))

    def test_connections_past_the_poll_daemon(self):
        q = self.queue()
        poll, epoll, cap = self.counts()
        self.assertEqual((poll, epoll), (1, 0))  # this test's own connection
        self.assertGreater(cap, 0)
        extra = 12
        apis = [Api(self.port, self.token) for _ in range(cap - 1 + extra)]
        try:
            ids = set()
            for i, api in enumerate(apis):
                status, _, body = api.call("POST", "/v1/queues/%s/messages" % q, {"n": i})
                self.assertEqual(status, 201, body)
                ids.add(body["id"])
            self.assertEqual(len(ids), len(apis))
            self.assertEqual(self.counts()[:2], (cap, extra))
            # A long poll on a connection of each daemon, woken by enqueues.
            q2 = self.queue()
            results = [{}, {}]

            def claim(api, result):
                result["status"], _, result["body"] = api.call(
                    "POST", "/v1/queues/%s/claims" % q2, {"wait": 20})
            threads = [threading.Thread(target=claim, args=(apis[0], results[0])),
                       threading.Thread(target=claim, args=(apis[-1], results[1]))]
            for t in threads:
                t.start()
            time.sleep(0.5)
            self.enqueue(q2, {"wake": 1})
            self.enqueue(q2, {"wake": 2})
            for t in threads:
                t.join(30)
            self.assertEqual([r["status"] for r in results], [200, 200], results)
            woke = {r["body"]["messages"][0]["body"]["wake"] for r in results}
            self.assertEqual(woke, {1, 2})
        finally:
            for api in apis:
                api.close()
        deadline = time.monotonic() + 10
        while self.counts()[:2] != (1, 0):
            self.assertLess(time.monotonic(), deadline, self.counts())
            time.sleep(0.05)
        # The poll daemon takes new connections again.
        api = Api(self.port, self.token)
        try:
            self.assertEqual(api.call("GET", "/healthz")[0], 200)
            self.assertEqual(self.counts()[:2], (2, 0))
        finally:
            api.close()


class Drain(HttpTestCase):
    JOBS = 2000

    def imap_worker(self, q, acked, errors):
        try:
            m = self.daemon.imaplib()
            m._simple_command("ENABLE", "CONDSTORE")
            m.select(q)
            misses = 0
            while misses < 30:
                m.untagged_responses.pop("ESEARCH", None)
                m.uid("SEARCH", "RETURN (MIN) UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED")
                es = m.untagged_responses.pop("ESEARCH", [b""])
                found = re.search(rb"MIN (\d+)", es[-1] or b"")
                if not found:
                    misses += 1
                    time.sleep(0.05)
                    continue
                misses = 0
                uid = int(found.group(1))
                _, data = m.uid("FETCH", str(uid), "(FLAGS MODSEQ)")
                text = b" ".join(d for d in data if isinstance(d, bytes))
                mm = re.search(rb"UID %d .*MODSEQ \((\d+)\)|MODSEQ \((\d+)\).*UID %d " %
                               (uid, uid), text)
                if not mm or re.search(rb"\$Claimed|\\Deleted|\$Delayed",
                                       text.split(b"UID %d" % uid)[-1][:200]):
                    continue
                modseq = int(mm.group(1) or mm.group(2))
                m.untagged_responses.pop("MODIFIED", None)
                _, data = m.uid("STORE", str(uid), "(UNCHANGEDSINCE %d) +FLAGS.SILENT ($Claimed)"
                                % modseq)
                if m.untagged_responses.pop("MODIFIED", None):
                    continue
                echo = b" ".join(d for d in data if isinstance(d, bytes))
                rm = re.search(rb"UID %d MODSEQ \((\d+)\)" % uid, echo)
                if not rm:
                    continue
                receipt = int(rm.group(1))
                _, data = m.uid("STORE", str(uid), "(UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)"
                                % receipt)
                if m.untagged_responses.pop("MODIFIED", None):
                    errors.append("imap ack of %d lost its lease" % uid)
                    continue
                m.uid("EXPUNGE", str(uid))
                acked.append(str(uid))
            m.logout()
        except Exception as e:  # reported by the test thread
            errors.append("imap worker: %r" % e)

    def http_worker(self, q, acked, errors):
        try:
            api = Api(self.port, self.token)
            empty = 0
            while empty < 3:
                status, _, body = api.call("POST", "/v1/queues/%s/claims" % q,
                                           {"max": 5, "wait": 1})
                if status != 200:
                    errors.append("claim %d %r" % (status, body))
                    return
                if not body["messages"]:
                    empty += 1
                    continue
                empty = 0
                for job in body["messages"]:
                    status, _, _ = api.call("POST", "/v1/queues/%s/messages/%s/ack" %
                                            (q, job["id"]), {"receipt": job["receipt"]})
                    if status != 204:
                        errors.append("http ack of %s: %d" % (job["id"], status))
                    else:
                        acked.append(job["id"])
            api.close()
        except Exception as e:  # reported by the test thread
            errors.append("http worker: %r" % e)

    def test_eight_mixed_workers_drain_every_job_once(self):
        q = self.queue()
        ids = []
        for start in range(0, self.JOBS, 1000):
            status, _, body = self.api.call("POST", "/v1/queues/%s/messages" % q, {
                "messages": [{"body": {"n": n}} for n in range(start, start + 1000)]})
            self.assertEqual(status, 201, body)
            ids += [m["id"] for m in body["messages"]]
        self.assertEqual(len(set(ids)), self.JOBS)
        imap_acked, http_acked, errors = [], [], []
        threads = [threading.Thread(target=self.imap_worker, args=(q, imap_acked, errors))
                   for _ in range(4)]
        threads += [threading.Thread(target=self.http_worker, args=(q, http_acked, errors))
                    for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.assertEqual(errors, [])
        acked = imap_acked + http_acked
        self.assertEqual(len(acked), len(set(acked)), "a job was acked twice")
        self.assertEqual(sorted(acked, key=int), sorted(ids, key=int))
        self.assertGreater(len(imap_acked), 0)
        self.assertGreater(len(http_acked), 0)
        status, _, body = self.api.call("GET", "/v1/queues/" + q)
        stats = body["stats"]
        self.assertEqual((stats["ready"], stats["claimed"], stats["delayed"], stats["dead"]),
                         (0, 0, 0, 0))


class Shutdown(unittest.TestCase):
    def test_sigterm_answers_parked_polls_and_exits_zero(self):
        daemon = harness.Daemon().start()
        self.addCleanup(daemon.cleanup)
        api = Api(daemon.ports["http"], daemon.credentials()[2])
        self.assertEqual(api.call("PUT", "/v1/queues/s")[0], 201)
        result = {}

        def run():
            c = Api(daemon.ports["http"], daemon.credentials()[2])
            try:
                result["status"], _, result["body"] = c.call("POST", "/v1/queues/s/claims",
                                                             {"wait": 30})
            except Exception as e:  # a reset connection is reported below
                result["error"] = e
            c.close()
        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.5)
        start = time.monotonic()
        self.assertEqual(daemon.stop(), 0)
        t.join(10)
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(result.get("status"), 200, result)
        self.assertEqual(result["body"], {"messages": []})
        api.close()


if __name__ == "__main__":
    harness.main()
