"""Users and roles against a real imapqd started with --users: a producer, a consumer limited to
queues matching `jobs*`, and an admin. Every allowed and refused path over IMAP (imaplib) and
HTTP (http.client); hidden queues answer exactly like missing ones; the demo account is gone;
a bad users file stops the start with a clear message; SIGHUP reloads the file."""
import http.client
import imaplib
import json
import os
import re
import signal
import tempfile
import time
import unittest

import harness

# Commands imaplib does not know by name.
for _name in ("ENABLE", "GETMETADATA", "SETMETADATA", "MOVE"):
    imaplib.Commands.setdefault(_name, ("AUTH", "SELECTED"))

USERS = {
    # name: (grants, password, token)
    "prod": ("producer", "prod-pw", "prod-token-" + "p" * 32),
    "cons": ("consumer:jobs*", "cons-pw", "cons-token-" + "c" * 32),
    "boss": ("admin", "boss-pw", "boss-token-" + "b" * 32),
}


class RolesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="imapq-roles-")
        cls.users_path = os.path.join(cls.dir, "users")
        harness.write_users(cls.users_path, USERS)
        cls.daemon = harness.Daemon(extra_args=["--users", cls.users_path]).start()
        for q in ("jobs", "jobs2", "secret"):
            status, _ = cls.http("boss", "PUT", "/v1/queues/" + q, {})
            assert status == 201, status
        for q in ("jobs", "secret"):
            for i in range(3):
                status, _ = cls.http("boss", "POST", "/v1/queues/%s/messages" % q, {"n": i})
                assert status == 201, status

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        cls.daemon.cleanup()
        harness.shutil.rmtree(cls.dir, ignore_errors=True)
        assert status == 0, "imapqd exited with %s:\n%s" % (status, cls.daemon.stderr)

    # --- helpers ---

    @classmethod
    def http(cls, user, method, path, body=None, token=None):
        conn = http.client.HTTPConnection("127.0.0.1", cls.daemon.ports["http"], timeout=30)
        headers = {"Authorization": "Bearer " + (token or USERS[user][2])}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        if raw and resp.getheader("Content-Type", "").startswith("application/json"):
            return resp.status, json.loads(raw)
        return resp.status, raw or None

    def imap(self, user):
        m = imaplib.IMAP4("127.0.0.1", self.daemon.ports["imap"])
        m.login(user, USERS[user][1])
        self.addCleanup(self.logout, m)
        return m

    @staticmethod
    def logout(m):
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    @staticmethod
    def listed(m):
        typ, data = m.list()
        assert typ == "OK", data
        names = []
        for line in data:
            names.append(line.decode().rsplit(' "/" ', 1)[1].strip('"'))
        return sorted(names)

    # --- IMAP ---

    def test_imap_list_shows_only_allowed(self):
        self.assertEqual(self.listed(self.imap("cons")),
                         ["jobs", "jobs/dead", "jobs2", "jobs2/dead"])
        everything = ["INBOX", "jobs", "jobs/dead", "jobs2", "jobs2/dead", "secret",
                      "secret/dead"]
        # Other tests add queues of their own: only the fixed ones are checked here.
        for user in ("prod", "boss"):
            listed = self.listed(self.imap(user))
            self.assertEqual([n for n in listed if n in everything], everything)
        m = self.imap("cons")
        m.subscribe("jobs")
        typ, data = m.subscribe("secret")
        self.assertEqual(typ, "NO")
        self.assertEqual(data, [b"[NONEXISTENT] No such mailbox"])

    def test_imap_hidden_answers_like_missing(self):
        m = self.imap("cons")
        for cmd in (lambda n: m.status(n, "(MESSAGES)"), m.select,
                    lambda n: m.select(n, readonly=True),
                    lambda n: m.getmetadata(n, "/shared/comment")
                    if hasattr(m, "getmetadata") else m._simple_command(
                        "GETMETADATA", n, "/shared/comment"),
                    lambda n: m.append(n, None, None, b"Subject: x\r\n\r\nx\r\n"),
                    m.delete):
            hidden = cmd("secret")
            missing = cmd("nosuchqueue")
            self.assertEqual(hidden[0], "NO")
            self.assertEqual(hidden, missing)
        self.assertEqual(m.status("secret", "(MESSAGES)"),
                         ("NO", [b"[NONEXISTENT] No such mailbox"]))
        self.assertEqual(m.append("secret", None, None, b"x\r\n"),
                         ("NO", [b"[TRYCREATE] No such mailbox"]))
        # The hidden queue's dead letters are hidden too.
        self.assertEqual(m.select("secret/dead"), m.select("nosuchqueue/dead"))

    def test_imap_producer(self):
        m = self.imap("prod")
        typ, data = m.append("jobs", None, None, b"Subject: p\r\n\r\nfrom the producer\r\n")
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"APPENDUID", data[0])
        typ, data = m.status("jobs", "(MESSAGES)")
        self.assertEqual(typ, "OK", data)
        for readonly in (False, True):
            typ, data = m.select("jobs", readonly=readonly)
            self.assertEqual(typ, "NO")
            self.assertTrue(data[0].startswith(b"[NOPERM]"), data)
        for typ, data in (m.create("newq"), m.delete("jobs"), m.rename("jobs", "jobs9"),
                          m._simple_command("SETMETADATA", "jobs",
                                            '(/shared/vendor/imapq/lease-seconds "60")')):
            self.assertEqual(typ, "NO")
        typ, data = m.create("newq")
        self.assertTrue(data[0].startswith(b"[NOPERM]"), data)
        typ, data = m._simple_command("GETMETADATA", "jobs",
                                      "/shared/vendor/imapq/lease-seconds")
        self.assertEqual(typ, "OK", data)

    def test_imap_consumer(self):
        m = self.imap("cons")
        typ, data = m.append("jobs", None, None, b"x\r\n")
        self.assertEqual(typ, "NO")
        self.assertTrue(data[0].startswith(b"[NOPERM]"), data)
        typ, data = m.create("jobs3")
        self.assertEqual((typ, data[0][:8]), ("NO", b"[NOPERM]"))
        # Creating a hidden name gets the same answer whether it exists or not.
        self.assertEqual(m.create("secret"), m.create("secret-not-there"))
        self.assertEqual(m.create("secret")[0], "NO")
        typ, data = m.delete("jobs2")
        self.assertEqual((typ, data[0][:8]), ("NO", b"[NOPERM]"))
        typ, data = m._simple_command("SETMETADATA", "jobs",
                                      '(/shared/vendor/imapq/lease-seconds "60")')
        self.assertEqual(typ, "NO")
        typ, data = m._simple_command("GETMETADATA", "jobs",
                                      "/shared/vendor/imapq/lease-seconds")
        self.assertEqual(typ, "OK", data)

        # Claim and ack the lowest ready job with conditional stores.
        m._simple_command("ENABLE", "CONDSTORE")
        typ, data = m.select("jobs")
        self.assertEqual(typ, "OK", data)
        typ, data = m.uid("SEARCH", "UNKEYWORD", "$Claimed", "UNDELETED")
        uid = data[0].split()[0].decode()
        typ, data = m.uid("FETCH", uid, "(FLAGS MODSEQ)")
        modseq = re.search(rb"MODSEQ \((\d+)\)", data[0]).group(1).decode()
        typ, data = m.uid("STORE", uid, "(UNCHANGEDSINCE %s)" % modseq, "+FLAGS.SILENT",
                          "($Claimed)")
        self.assertEqual(typ, "OK", data)
        receipt = re.search(rb"MODSEQ \((\d+)\)", data[0]).group(1).decode()
        typ, data = m.uid("FETCH", uid, "(BODY.PEEK[TEXT])")
        self.assertEqual(typ, "OK", data)
        typ, data = m.uid("STORE", uid, "(UNCHANGEDSINCE %s)" % receipt, "+FLAGS.SILENT",
                          "(\\Deleted)")
        self.assertEqual(typ, "OK", data)
        typ, data = m.uid("EXPUNGE", uid)
        self.assertEqual(typ, "OK", data)
        # COPY and MOVE enqueue into their target: the producer role is needed there.
        typ, data = m.copy("1", "jobs2")
        self.assertEqual((typ, data[0][:8]), ("NO", b"[NOPERM]"))
        self.assertEqual(m.copy("1", "secret"), m.copy("1", "nosuchqueue"))
        self.assertEqual(m.copy("1", "secret")[1], [b"[TRYCREATE] No such mailbox"])
        typ, data = m._simple_command("MOVE", "1", "secret")
        self.assertEqual((typ, data), ("NO", [b"[TRYCREATE] No such mailbox"]))
        # The dead letters of a visible queue can be read.
        typ, data = m.select("jobs/dead", readonly=True)
        self.assertEqual(typ, "OK", data)

    def test_imap_admin(self):
        m = self.imap("boss")
        self.assertEqual(m.create("adminq")[0], "OK")
        typ, data = m._simple_command("SETMETADATA", "adminq",
                                      '(/shared/vendor/imapq/lease-seconds "60")')
        self.assertEqual(typ, "OK", data)
        self.assertEqual(m.append("adminq", None, None, b"x\r\n")[0], "OK")
        self.assertEqual(m.select("adminq")[0], "OK")
        self.assertEqual(m.copy("1", "secret")[0], "OK")
        m.close()
        self.assertEqual(m.rename("adminq", "adminq2")[0], "OK")
        self.assertEqual(m.delete("adminq2")[0], "OK")

    def test_imap_failed_logins(self):
        m = imaplib.IMAP4("127.0.0.1", self.daemon.ports["imap"])
        answers = []
        for user, password in (("cons", "wrong"), ("nobody", "cons-pw")):
            start = time.monotonic()
            with self.assertRaises(imaplib.IMAP4.error) as cm:
                m.login(user, password)
            answers.append(str(cm.exception))
            self.assertGreaterEqual(time.monotonic() - start, 0.2)
        # An unknown user is answered exactly like a wrong password.
        self.assertEqual(answers[0], answers[1])
        self.assertIn("AUTHENTICATIONFAILED", answers[0])
        m.shutdown()
        # The demo account does not exist with --users.
        m = imaplib.IMAP4("127.0.0.1", self.daemon.ports["imap"])
        with self.assertRaises(imaplib.IMAP4.error):
            m.login("demo", "demo")
        m.shutdown()
        self.assertFalse(os.path.exists(os.path.join(self.daemon.data_dir, "data",
                                                     "credentials")))

    # --- HTTP ---

    def test_http_listing(self):
        status, body = self.http("cons", "GET", "/v1/queues")
        self.assertEqual(status, 200)
        self.assertEqual(sorted(q["name"] for q in body["queues"]), ["jobs", "jobs2"])
        status, body = self.http("prod", "GET", "/v1/queues")
        self.assertIn("secret", [q["name"] for q in body["queues"]])
        self.assertEqual(self.http("cons", "GET", "/metrics")[0], 403)
        self.assertEqual(self.http("prod", "GET", "/metrics")[0], 403)
        self.assertEqual(self.http("boss", "GET", "/metrics")[0], 200)
        self.assertEqual(self.http("cons", "GET", "/v1/queues", token="x" * 43)[0], 401)
        self.assertEqual(self.http("cons", "GET", "/v1/queues", token=USERS["cons"][1])[0],
                         401)

    def test_http_hidden_answers_like_missing(self):
        calls = [("GET", "", None), ("PUT", "", {}), ("DELETE", "", None),
                 ("POST", "/purge", None), ("POST", "/messages", {"n": 1}),
                 ("GET", "/messages?state=ready", None), ("POST", "/claims", {}),
                 ("POST", "/messages/1/ack", {"receipt": "1-1"}),
                 ("GET", "/changes?since=0", None), ("POST", "/dead/requeue", None)]
        for method, tail, body in calls:
            hidden = self.http("cons", method, "/v1/queues/secret" + tail, body)
            missing = self.http("cons", method, "/v1/queues/nosuchqueue" + tail, body)
            self.assertEqual(hidden[0], 404, (method, tail, hidden))
            self.assertEqual(hidden, missing, (method, tail))
        # The answer is the one a missing queue gets from the handlers themselves, whether
        # asked by an admin or by the consumer about a name its pattern covers.
        for method, tail, body in calls:
            if method == "PUT":
                continue
            hidden = self.http("cons", method, "/v1/queues/secret" + tail, body)
            self.assertEqual(hidden, self.http("boss", method, "/v1/queues/nosuchqueue" + tail,
                                               body), (method, tail))
            if method in ("GET", "POST") and tail not in ("", "/purge", "/dead/requeue",
                                                          "/messages"):
                self.assertEqual(hidden, self.http("cons", method, "/v1/queues/jobsmissing" +
                                                   tail, body), (method, tail))

    def test_http_producer(self):
        status, body = self.http("prod", "POST", "/v1/queues/jobs2/messages", {"p": 1})
        self.assertEqual(status, 201, body)
        self.assertEqual(self.http("prod", "GET", "/v1/queues/jobs2")[0], 200)
        for method, tail, body in [("POST", "/claims", {}), ("GET", "/messages", None),
                                   ("GET", "/changes?since=0", None),
                                   ("POST", "/messages/1/ack", {"receipt": "1-1"}),
                                   ("POST", "/messages/1/nack", {"receipt": "1-1"}),
                                   ("POST", "/messages/1/extend", {"receipt": "1-1"}),
                                   ("PUT", "", {}), ("DELETE", "", None),
                                   ("POST", "/purge", None), ("POST", "/dead/requeue", None)]:
            status, reply = self.http("prod", method, "/v1/queues/jobs2" + tail, body)
            self.assertEqual(status, 403, (method, tail, reply))
            self.assertEqual(reply["error"]["code"], "forbidden")

    def test_http_consumer(self):
        self.assertEqual(self.http("boss", "POST", "/v1/queues/jobs2/messages", {"c": 1})[0], 201)
        self.assertEqual(self.http("cons", "POST", "/v1/queues/jobs2/messages", {"c": 2})[0], 403)
        self.assertEqual(self.http("cons", "GET", "/v1/queues/jobs2/messages")[0], 200)
        self.assertEqual(self.http("cons", "GET", "/v1/queues/jobs2/changes?since=0")[0], 200)
        status, body = self.http("cons", "POST", "/v1/queues/jobs2/claims", {"max": 2})
        self.assertEqual(status, 200, body)
        self.assertGreaterEqual(len(body["messages"]), 1)
        jobs = body["messages"]
        job = jobs[0]
        path = "/v1/queues/jobs2/messages/%s/" % job["id"]
        status, body = self.http("cons", "POST", path + "extend",
                                 {"receipt": job["receipt"], "lease": 60})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.http("cons", "POST", path + "ack", {"receipt": body["receipt"]})[0],
                         204)
        for other in jobs[1:]:
            status, _ = self.http("cons", "POST", "/v1/queues/jobs2/messages/%s/nack"
                                  % other["id"], {"receipt": other["receipt"]})
            self.assertEqual(status, 204)
        for method, tail in [("PUT", ""), ("DELETE", ""), ("POST", "/purge"),
                             ("POST", "/dead/requeue")]:
            status, reply = self.http("cons", method, "/v1/queues/jobs2" + tail,
                                      {} if method == "PUT" else None)
            self.assertEqual(status, 403, (method, tail, reply))
        # Creating a queue the consumer may not see: 404, as for any hidden name.
        self.assertEqual(self.http("cons", "PUT", "/v1/queues/other", {})[0], 404)
        # A target that does not parse is a 400 for a token limited to some queues too; a bad
        # token still gets 401.
        for path in ["/v1/queues/jobs2/messages/abc/ack", "/v1/queues/jobs2%2Fdead/claims",
                     "/v1/queues/jobs2/messages/0/ack"]:
            status, body = self.http("cons", "POST", path, {"receipt": "1-1"})
            self.assertEqual(status, 400, (path, body))
            self.assertEqual(body["error"]["code"], "invalid", (path, body))
            self.assertEqual(self.http("cons", "POST", path, {}, token="wrong-token")[0], 401)

    def test_http_admin(self):
        self.assertEqual(self.http("boss", "PUT", "/v1/queues/tmpq", {"lease": 5})[0], 201)
        self.assertEqual(self.http("boss", "POST", "/v1/queues/tmpq/messages", {"a": 1})[0], 201)
        self.assertEqual(self.http("boss", "POST", "/v1/queues/tmpq/claims", {})[0], 200)
        self.assertEqual(self.http("boss", "POST", "/v1/queues/tmpq/purge")[0], 200)
        self.assertEqual(self.http("boss", "DELETE", "/v1/queues/tmpq")[0], 204)

    def test_sighup_reloads_users(self):
        users = dict(USERS)
        users["late"] = ("consumer:secret", "late-pw", "late-token-" + "l" * 32)
        with open(self.users_path + ".new", "w") as f:
            f.write(harness.users_text(users))
        os.replace(self.users_path + ".new", self.users_path)
        self.daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            status, body = self.http("late", "GET", "/v1/queues", token=users["late"][2])
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(status, 200)
        self.assertEqual([q["name"] for q in body["queues"]], ["secret"])
        m = imaplib.IMAP4("127.0.0.1", self.daemon.ports["imap"])
        m.login("late", "late-pw")
        self.assertEqual(self.listed(m), ["secret", "secret/dead"])
        m.logout()


class UserCommandTest(unittest.TestCase):
    """`imapq user` writes a users file that imapqd takes: add, token, roles and del, then
    SIGHUP applies the changes."""

    def user(self, *args, stdin=None):
        imapq = os.path.join(os.path.dirname(os.path.abspath(harness.IMAPQD)), "imapq")
        r = harness.subprocess.run([imapq, "user", *args, "--users", self.path],
                                   input=stdin, capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout, r.stderr

    def test_user_lifecycle(self):
        d = tempfile.mkdtemp(prefix="imapq-user-")
        self.addCleanup(harness.shutil.rmtree, d, True)
        self.path = os.path.join(d, "users")
        rc, _, err = self.user("add", "ann", "--roles", "admin", "--iterations", "1000",
                               stdin="ann-pw\n")
        self.assertEqual(rc, 0, err)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)
        rc, _, _ = self.user("add", "ann", "--roles", "admin", stdin="x\n")
        self.assertEqual(rc, 4)
        rc, out, err = self.user("token", "ann")
        self.assertEqual(rc, 0, err)
        token = out.strip().split()[-1]
        with open(self.path) as f:
            self.assertNotIn(token, f.read())
        rc, out, _ = self.user("list")
        self.assertIn("ann", out)

        daemon = harness.Daemon(extra_args=["--users", self.path]).start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", daemon.ports["http"], timeout=30)
            conn.request("PUT", "/v1/queues/work", body="{}",
                         headers={"Authorization": "Bearer " + token})
            self.assertEqual(conn.getresponse().status, 201)
            conn.close()
            m = imaplib.IMAP4("127.0.0.1", daemon.ports["imap"])
            m.login("ann", "ann-pw")
            self.assertEqual(m.select("work")[0], "OK")
            m.logout()

            rc, _, err = self.user("roles", "ann", "--roles", "producer")
            self.assertEqual(rc, 0, err)
            daemon.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while True:
                conn = http.client.HTTPConnection("127.0.0.1", daemon.ports["http"], timeout=30)
                conn.request("POST", "/v1/queues/work/claims", body="{}",
                             headers={"Authorization": "Bearer " + token,
                                      "Content-Type": "application/json"})
                status = conn.getresponse().status
                conn.close()
                if status == 403 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertEqual(status, 403)

            rc, _, err = self.user("del", "ann")
            self.assertEqual(rc, 0, err)
            rc, _, _ = self.user("del", "ann")
            self.assertEqual(rc, 3)
        finally:
            daemon.stop()
            daemon.cleanup()


class StartupTest(unittest.TestCase):
    def run_with_users(self, text):
        d = tempfile.mkdtemp(prefix="imapq-roles-")
        path = os.path.join(d, "users")
        if text is not None:
            with open(path, "w") as f:
                f.write(text)
        try:
            return harness.run_imapqd(["--data", os.path.join(d, "data"), "--imap",
                                       "127.0.0.1:0", "--http", "127.0.0.1:0", "--users",
                                       path])
        finally:
            harness.shutil.rmtree(d, ignore_errors=True)

    def test_bad_users_file_refuses_to_start(self):
        r = self.run_with_users("alice roles=admin\nbob roles=superuser\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("line 2: bad roles 'superuser'", r.stderr)
        r = self.run_with_users("alice roles=admin password=plain\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("line 1: password is not $pbkdf2-sha256$", r.stderr)

    def test_missing_or_empty_users_file_refuses_to_start(self):
        r = self.run_with_users(None)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("No such file", r.stderr)
        r = self.run_with_users("# nobody yet\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no users", r.stderr)


EDGE_USERS = {
    "chief": ("admin", "chief-pw", "chief-token-" + "a" * 32),
    # Admin of the queue "team" alone, and of every queue starting with "other".
    "mover": ("admin:team,admin:other*", "mover-pw", "mover-token-" + "m" * 32),
    # A pattern that spells "inbox" in small letters but not "INBOX".
    "lower": ("admin:i*", "lower-pw", "lower-token-" + "l" * 32),
    "reader": ("consumer:jobs*", "reader-pw", "reader-token-" + "r" * 32),
}


class PatternEdgesTest(unittest.TestCase):
    """Paths around the patterns: RENAME carries a mailbox's children along, INBOX is
    case-insensitive, LIST patterns are the client's, and a login name is the client's."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="imapq-edges-")
        path = os.path.join(cls.dir, "users")
        harness.write_users(path, EDGE_USERS)
        cls.daemon = harness.Daemon(extra_args=["--users", path]).start()

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        cls.daemon.cleanup()
        harness.shutil.rmtree(cls.dir, ignore_errors=True)
        assert status == 0, "imapqd exited with %s:\n%s" % (status, cls.daemon.stderr)

    def raw(self, user):
        from rawimap import RawImap
        c = RawImap(self.daemon.ports["imap"])
        self.addCleanup(c.close)
        c.login(user, EDGE_USERS[user][1])
        return c

    def http(self, user, method, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.ports["http"], timeout=30)
        conn.request(method, path, headers={"Authorization": "Bearer " + EDGE_USERS[user][2]})
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, raw

    @staticmethod
    def names(listed):
        return sorted(line.rsplit(" ", 1)[1].strip('"') for line in listed)

    def test_rename_never_moves_a_hidden_child(self):
        chief = self.raw("chief")
        for name in ("team", "team/secret", "other1", "other1/x"):
            self.assertIn(" OK ", chief.command('CREATE "%s"' % name)[1])
        self.assertIn(" OK ", chief.command('APPEND "team/secret" {4+}\r\nx\r\n')[1])
        mover = self.raw("mover")
        # team/secret is hidden from mover: renaming team must not carry it to "other/secret",
        # a name mover could then read.
        _, tagged = mover.command('RENAME "team" "other"')
        self.assertIn(" NO [NOPERM] ", tagged)
        _, tagged = mover.command('SELECT "other/secret"')
        self.assertIn(" NO [NONEXISTENT] ", tagged)
        # Nor may a rename drop a visible child on a name outside mover's patterns.
        _, tagged = mover.command('RENAME "other1" "team/sub"')
        self.assertIn(" NO [NOPERM] ", tagged)
        names = self.names(chief.command('LIST "" "*"')[0])
        for name in ("team", "team/secret", "other1", "other1/x"):
            self.assertIn(name, names)
        self.assertNotIn("team/sub", names)
        # A rename whose every mailbox stays inside the patterns still works.
        self.assertIn(" OK ", mover.command('RENAME "other1" "other2"')[1])
        self.assertEqual(self.names(mover.command('LIST "" "other2*"')[0]),
                         ["other2", "other2/x"])

    def test_inbox_is_judged_in_capitals_over_http(self):
        # IMAP spells any case of INBOX as INBOX before judging it; HTTP must too.
        lower = self.raw("lower")
        self.assertIn(" NO [NONEXISTENT] ", lower.command('SELECT "inbox"')[1])
        for method, tail in (("GET", ""), ("GET", "/messages"), ("POST", "/purge")):
            status, body = self.http("lower", method, "/v1/queues/inbox" + tail)
            self.assertEqual((status, body), self.http("lower", method,
                                                       "/v1/queues/nosuchqueue" + tail),
                             (method, tail))
            self.assertEqual(status, 404, (method, tail, body))

    def test_list_patterns_cost_linear_time(self):
        chief = self.raw("chief")
        for name in ("jobs-with-a-rather-long-name-to-match", "jobs/dead"):
            self.assertIn(" OK ", chief.command('CREATE "%s"' % name)[1])
        reader = self.raw("reader")
        reader.sock.settimeout(5)
        # Backtracking over 24 wildcards would take years; the answer must come at once.
        listed, tagged = reader.command('LIST "" "%s"' % ("*%" * 12 + "x"))
        self.assertIn(" OK ", tagged)
        self.assertEqual(listed, [])
        listed, tagged = reader.command('LIST "" "%s"' % ("j" + "*%" * 12 + "h"))
        self.assertIn(" OK ", tagged)
        self.assertEqual(self.names(listed), ["jobs-with-a-rather-long-name-to-match"])
        names = self.names(reader.command('LIST "" "jobs%"')[0])
        self.assertIn("jobs-with-a-rather-long-name-to-match", names)
        self.assertNotIn("jobs/dead", names)
        self.assertIn("jobs/dead", self.names(reader.command('LIST "" "jobs*"')[0]))
        self.assertEqual(self.names(reader.command('LIST "" "%/%"')[0]), ["jobs/dead"])

    def test_login_name_cannot_forge_log_lines(self):
        from rawimap import RawImap
        c = RawImap(self.daemon.ports["imap"])
        self.addCleanup(c.close)
        name = b"x\r\n2000-01-01T00:00:00.000Z info imap: 192.0.2.7:1: forged"
        c.send(b"a LOGIN {%d+}\r\n%s nothing\r\n" % (len(name), name))
        self.assertIn("AUTHENTICATIONFAILED", c.read_until("a")[1])
        with open(self.daemon.err_path, errors="replace") as f:
            lines = f.read().splitlines()
        self.assertFalse([line for line in lines if line.startswith("2000-01-01")], lines[-5:])
        self.assertTrue([line for line in lines if "login failed for 'x" in line], lines[-5:])


if __name__ == "__main__":
    harness.main()
