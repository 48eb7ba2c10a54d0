"""Strict JSON on the HTTP front against a real imapqd: bodies that cJSON alone would take (numbers
outside RFC 8259, control bytes between tokens, a byte order mark) are refused with 400, and a job
appended over IMAP as application/json but not valid JSON still gives claim and peek replies that
parse."""
import http.client
import json

import harness


class StrictJsonTest(harness.ApiTestCase):
    counter = 0

    def queue(self):
        """Creates a fresh queue and returns its name."""
        type(self).counter += 1
        name = "strict%d" % type(self).counter
        status, reply = self.http("PUT", "/v1/queues/" + name)
        self.assertEqual(status, 201, reply)
        return name

    def raw(self, method, path, body=None, ctype="application/json"):
        """Sends body (bytes) as it is: (status, reply bytes)."""
        _, _, token = self.daemon.credentials()
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.ports["http"],
                                          timeout=harness.PATIENCE)
        try:
            conn.request(method, path, body=body,
                         headers={"Authorization": "Bearer " + token, "Content-Type": ctype})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def test_lenient_json_is_refused(self):
        q = self.queue()
        path = "/v1/queues/%s/messages" % q
        bodies = [b'{"a":01}', b'{"a":1.}', b'{"a":-.5}', b'\x01{"b":-.5,"c":1.}',
                  b'{"a":\x011}', b'\xef\xbb\xbf{"a":1}']
        for body in bodies:
            with self.subTest(body=body):
                status, text = self.raw("POST", path, body)
                self.assertEqual(status, 400, text)
                reply = json.loads(text)
                self.assertEqual(reply["error"]["code"], "invalid", reply)
                self.assertIsInstance(reply["error"]["message"], str)
        # The same bodies inside a batch entry, and as claim and settle bodies.
        for body in (b'{"messages":[{"body":01}]}', b'{"max":1.}',
                     b'\xef\xbb\xbf{"max":1}'):
            with self.subTest(body=body):
                target = path if body.startswith(b'{"messages"') else \
                    "/v1/queues/%s/claims" % q
                status, text = self.raw("POST", target, body)
                self.assertEqual(status, 400, text)
                self.assertEqual(json.loads(text)["error"]["code"], "invalid")
        # Nothing was enqueued; RFC 8259 JSON still is.
        self.assertEqual(self.http("GET", "/v1/queues/" + q)[1]["stats"]["ready"], 0)
        status, text = self.raw("POST", path, b' {"a":[0,-0.5,1e5,1E-2,true,null]}\r\n\t')
        self.assertEqual(status, 201, text)

    def test_imap_appended_lenient_json_claims_as_valid_json(self):
        q = self.queue()
        bodies = [b'{"a":01}', b'\x01{"b":-.5,"c":1.}', b'\xef\xbb\xbf{"a":1}']
        good = b'{"ok":[1,2]}'
        m = self.daemon.imaplib()
        try:
            for body in bodies + [good]:
                typ, _ = m.append(q, None, None, b"Subject: lenient\r\nContent-Type: "
                                  b"application/json\r\n\r\n" + body + b"\r\n")
                self.assertEqual(typ, "OK")
        finally:
            m.logout()
        status, text = self.raw("POST", "/v1/queues/%s/claims" % q, b'{"max":10}')
        self.assertEqual(status, 200, text)
        jobs = json.loads(text)["messages"]  # the point: a worker can read the reply
        self.assertEqual(len(jobs), len(bodies) + 1)
        # A peek with bodies pastes them the same way.
        status, text = self.raw("GET", "/v1/queues/%s/messages?state=claimed&body=true" % q)
        self.assertEqual(status, 200, text)
        self.assertEqual([j["body"] for j in json.loads(text)["messages"]],
                         [j["body"] for j in jobs])
        for job, body in zip(jobs, bodies):
            # Not JSON, so it goes out as text, as any non-JSON UTF-8 body does.
            self.assertEqual(job["content_type"], "application/json")
            self.assertIsInstance(job["body"], str)
            self.assertEqual(job["body"].strip("\r\n").encode(), body)
        self.assertEqual(jobs[-1]["body"], {"ok": [1, 2]})


if __name__ == "__main__":
    harness.main()
