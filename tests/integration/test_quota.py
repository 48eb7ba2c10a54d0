"""Message quotas against a real imapqd started with --max-queue-messages 3 and --users: APPEND,
COPY and MOVE into a full mailbox answer NO [OVERQUOTA] and change nothing; GETQUOTAROOT,
GETQUOTA and SETQUOTA (RFC 9208) report and change a queue's limit, SETQUOTA only for admins;
hidden roots answer like missing ones; HTTP enqueue (single and batch) into a full queue answers
507 over_quota; and a job still reaches <queue>/dead when the dead letters are full."""
import imaplib
import json
import os
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import harness

for _name in ("MOVE", "GETMETADATA"):
    imaplib.Commands.setdefault(_name, ("AUTH", "SELECTED"))

LIMIT = 3
USERS = {
    # name: (grants, password, token)
    "boss": ("admin", "boss-pw", "boss-token-" + "b" * 32),
    "prod": ("producer", "prod-pw", "prod-token-" + "p" * 32),
    "cons": ("consumer:jobs*", "cons-pw", "cons-token-" + "c" * 32),
}
BODY = "Subject: q\r\n\r\nbody\r\n"


class QuotaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="imapq-quota-")
        cls.users_path = os.path.join(cls.dir, "users")
        harness.write_users(cls.users_path, USERS)
        cls.daemon = harness.Daemon(extra_args=["--users", cls.users_path,
                                                "--max-queue-messages", str(LIMIT)]).start()

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        cls.daemon.cleanup()
        harness.shutil.rmtree(cls.dir, ignore_errors=True)
        assert status == 0, "imapqd exited with %s:\n%s" % (status, cls.daemon.stderr)

    # --- helpers ---

    def http(self, user, method, path, body=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.daemon.ports["http"], path),
                                     data=data, method=method,
                                     headers={"Authorization": "Bearer " + USERS[user][2],
                                              "Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=harness.PATIENCE) as resp:
                text = resp.read()
                return resp.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def imap(self, user):
        m = imaplib.IMAP4("127.0.0.1", self.daemon.ports["imap"])
        m.login(user, USERS[user][1])
        self.addCleanup(m.logout)
        return m

    def make_queue(self, name, settings=None):
        status, reply = self.http("boss", "PUT", "/v1/queues/" + name, settings or {})
        self.assertEqual(status, 201, reply)

    def count(self, name):
        status, reply = self.http("boss", "GET", "/v1/queues/" + name)
        self.assertEqual(status, 200, reply)
        return reply["stats"]["messages"]

    def append(self, m, mailbox, body=BODY):
        return m.append(mailbox, None, None, body.encode())

    def fill(self, m, mailbox, n):
        for _ in range(n):
            typ, data = self.append(m, mailbox)
            self.assertEqual(typ, "OK", data)

    # --- IMAP ---

    def test_capability_after_login(self):
        m = imaplib.IMAP4("127.0.0.1", self.daemon.ports["imap"])
        self.assertNotIn("QUOTA", m.capabilities)
        m.login("prod", USERS["prod"][1])
        typ, data = m.capability()
        caps = data[0].decode().split()
        for cap in ("QUOTA", "QUOTA=RES-MESSAGE", "QUOTASET"):
            self.assertIn(cap, caps)
        m.logout()

    def test_append_at_limit(self):
        self.make_queue("qa")
        m = self.imap("prod")
        self.fill(m, "qa", LIMIT)
        typ, data = self.append(m, "qa")
        self.assertEqual(typ, "NO")
        self.assertTrue(data[0].startswith(b"[OVERQUOTA]"), data)
        self.assertEqual(self.count("qa"), LIMIT)

    def test_copy_and_move_that_overflow_copy_nothing(self):
        self.make_queue("qc")
        self.make_queue("qd")
        m = self.imap("boss")
        self.fill(m, "qc", 2)
        self.fill(m, "qd", 2)
        m.select("qc")
        for cmd in (("COPY", "1:2", "qd"), ("MOVE", "1:2", "qd")):
            typ, data = m._simple_command(*cmd)
            self.assertEqual(typ, "NO", cmd)
            self.assertIn(b"[OVERQUOTA]", data[-1])
        typ, data = m.uid("COPY", "1:2", "qd")
        self.assertEqual(typ, "NO")
        typ, data = m.uid("MOVE", "1:2", "qd")
        self.assertEqual(typ, "NO")
        self.assertEqual(self.count("qc"), 2)
        self.assertEqual(self.count("qd"), 2)
        # One fits.
        typ, data = m.uid("COPY", "1", "qd")
        self.assertEqual(typ, "OK", data)
        self.assertEqual(self.count("qd"), 3)
        # The finding: a mailbox copied onto itself stops at its limit.
        typ, data = m._simple_command("COPY", "1:*", "qc")
        self.assertEqual(typ, "NO")
        self.assertEqual(self.count("qc"), 2)

    def test_getquotaroot_and_getquota(self):
        self.make_queue("qr")
        m = self.imap("prod")
        self.fill(m, "qr", 2)
        typ, data = m.getquotaroot("qr")
        self.assertEqual(typ, "OK", data)
        self.assertEqual(data[0], [b"qr qr"])
        self.assertEqual(data[1], [b"qr (MESSAGE 2 3)"])
        typ, data = m.getquota("qr")
        self.assertEqual(typ, "OK", data)
        self.assertEqual(data, [b"qr (MESSAGE 2 3)"])
        typ, data = m.getquota("no-such-root")
        self.assertEqual(typ, "NO")
        self.assertTrue(data[0].startswith(b"[NONEXISTENT]"), data)

    def test_setquota_by_admin(self):
        self.make_queue("qs")
        boss = self.imap("boss")
        self.fill(boss, "qs", LIMIT)
        typ, data = boss.setquota("qs", "(MESSAGE 5)")
        self.assertEqual(typ, "OK", data)
        self.assertEqual(data, [b"qs (MESSAGE 3 5)"])
        self.fill(boss, "qs", 2)
        typ, _ = self.append(boss, "qs")
        self.assertEqual(typ, "NO")
        # The same value everywhere: METADATA and HTTP.
        status, reply = self.http("boss", "GET", "/v1/queues/qs")
        self.assertEqual(reply["settings"]["max_messages"], 5)
        typ, data = boss._simple_command("GETMETADATA", "qs",
                                         "/shared/vendor/imapq/max-messages")
        self.assertEqual(typ, "OK")
        self.assertIn(b'"5"', boss.untagged_responses.pop("METADATA")[0])
        # Unknown resources and out-of-range limits are refused, and change nothing.
        typ, data = boss.setquota("qs", "(STORAGE 100)")
        self.assertEqual(typ, "NO")
        typ, data = boss.setquota("qs", "(MESSAGE 0)")
        self.assertEqual(typ, "NO")
        typ, data = boss.getquota("qs")
        self.assertEqual(data, [b"qs (MESSAGE 5 5)"])
        # An empty list removes the queue's own limit: the daemon's default again.
        typ, data = boss.setquota("qs", "()")
        self.assertEqual(typ, "OK", data)
        self.assertEqual(data, [b"qs (MESSAGE 5 3)"])

    def test_setquota_refused_without_admin(self):
        self.make_queue("jobs-q")
        for user in ("prod", "cons"):
            m = self.imap(user)
            typ, data = m.setquota("jobs-q", "(MESSAGE 100)")
            self.assertEqual(typ, "NO", user)
            self.assertTrue(data[0].startswith(b"[NOPERM]"), data)
        typ, data = self.imap("boss").getquota("jobs-q")
        self.assertEqual(data, [b"jobs-q (MESSAGE 0 3)"])

    def test_hidden_roots_answer_like_missing_ones(self):
        self.make_queue("secret-q")
        m = self.imap("cons")
        answers = []
        for root in ("secret-q", "no-such-q"):
            for cmd in ("GETQUOTA", "GETQUOTAROOT"):
                typ, data = m._simple_command(cmd, root)
                answers.append((typ, data[-1]))
            typ, data = m.setquota(root, "(MESSAGE 9)")
            answers.append((typ, data[-1]))
        self.assertEqual(answers[:3], answers[3:])
        for typ, text in answers:
            self.assertEqual(typ, "NO")
            self.assertEqual(text, b"[NONEXISTENT] No such mailbox")

    # --- HTTP ---

    def test_http_enqueue_into_full_queue(self):
        self.make_queue("qh")
        status, reply = self.http("prod", "POST", "/v1/queues/qh/messages",
                                  {"messages": [{"body": {"n": i}} for i in range(LIMIT + 1)]})
        self.assertEqual(status, 507, reply)
        self.assertEqual(reply["error"]["code"], "over_quota")
        self.assertNotIn("messages", reply)
        self.assertEqual(self.count("qh"), 0)
        status, reply = self.http("prod", "POST", "/v1/queues/qh/messages",
                                  {"messages": [{"body": {"n": i}} for i in range(LIMIT)]})
        self.assertEqual(status, 201, reply)
        for raw, ctype in ((b'{"n": 9}', "application/json"), (b"text", "text/plain")):
            status, reply = self.http("prod", "POST", "/v1/queues/qh/messages", raw=raw,
                                      ctype=ctype)
            self.assertEqual(status, 507, reply)
            self.assertEqual(set(reply), {"error"})
            self.assertEqual(reply["error"]["code"], "over_quota")
            self.assertTrue(reply["error"]["message"])
        status, reply = self.http("boss", "GET", "/v1/queues/qh")
        self.assertEqual(reply["settings"]["max_messages"], LIMIT)
        self.assertEqual(reply["stats"]["messages"], LIMIT)
        # A settings update raises the limit.
        status, reply = self.http("boss", "PUT", "/v1/queues/qh", {"max_messages": LIMIT + 1})
        self.assertEqual(status, 200, reply)
        self.assertEqual(reply["settings"]["max_messages"], LIMIT + 1)
        status, reply = self.http("prod", "POST", "/v1/queues/qh/messages", {"n": 10})
        self.assertEqual(status, 201, reply)
        status, reply = self.http("boss", "PUT", "/v1/queues/qh", {"max_messages": 0})
        self.assertEqual(status, 400, reply)

    # --- dead letters ---

    def test_dead_letter_reaches_a_full_dead_mailbox(self):
        self.make_queue("qx", {"max_attempts": 1, "lease": 1})
        boss = self.imap("boss")
        self.fill(boss, "qx/dead", LIMIT)
        typ, _ = self.append(boss, "qx/dead")
        self.assertEqual(typ, "NO")
        # One job dead-lettered by a nack, one by its lease running out.
        for _ in range(2):
            status, reply = self.http("prod", "POST", "/v1/queues/qx/messages", {"n": 1})
            self.assertEqual(status, 201, reply)
        status, reply = self.http("boss", "POST", "/v1/queues/qx/claims", {"max": 2})
        self.assertEqual(status, 200, reply)
        self.assertEqual(len(reply["messages"]), 2)
        first = reply["messages"][0]
        status, reply = self.http("boss", "POST", "/v1/queues/qx/messages/%s/nack" % first["id"],
                                  {"receipt": first["receipt"]})
        self.assertEqual(status, 204, reply)
        deadline = time.monotonic() + harness.PATIENCE
        while time.monotonic() < deadline:
            status, reply = self.http("boss", "GET", "/v1/queues/qx")
            if reply["stats"]["dead"] == LIMIT + 2:
                break
            time.sleep(0.1)
        self.assertEqual(reply["stats"]["dead"], LIMIT + 2)
        self.assertEqual(reply["stats"]["messages"], 0)
        typ, data = boss.getquota("qx/dead")
        self.assertEqual(data, [b"qx/dead (MESSAGE 5 3)"])


if __name__ == "__main__":
    harness.main()
