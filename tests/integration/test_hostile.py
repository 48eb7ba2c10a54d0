"""Hostile input against a real imapqd, on both fronts: every limit of docs/security.md with the
exact answer expected, malformed commands, slow and non-reading clients, the per-address limit
and mailbox-name traversal attempts. After all of it the daemon must still serve, every job it
acknowledged must still be there, and no file may have appeared outside its data folder.

Raw sockets (rawimap.py, socket) and http.client are used throughout, because imaplib and urllib
hide or rewrite exactly the bytes these tests are about."""
import http.client
import json
import os
import re
import resource
import socket
import threading
import time

import harness
from rawimap import RawImap

# Limits from imap/base/limits.h, as the daemon applies them.
MAX_LINE_PREAUTH = 8 * 1024
MAX_LINE = 64 * 1024
MAX_LITERAL_PREAUTH = 8 * 1024
MAX_NESTING = 16
MAX_ARGS = 1024
MAX_MESSAGE = 64 * 1024 * 1024
MAX_PER_ADDR = 256
HTTP_MAX_JSON = 4 * 1024 * 1024
HTTP_MAX_BODY = 16 * 1024 * 1024
HTTP_MAX_JSON_DEPTH = 64
HTTP_MAX_PER_IP = 1024

# Names that would leave the data folder if they were paths: the first six are valid mailbox
# names (they never become paths), the others are refused.
TRAVERSAL_NAMES = ["../hi-up", "hi-a/../../hi-b", "./hi-dot", "hi-c/..", "hi-d/.", "hi-e/./hi-f",
                   "/hi-abs", "hi-g//hi-h", "//hi-root"]
HTTP_NAMES = ["../hq-up", "hq-a/../../hq-b", "../../../../etc/hq-passwd", "/hq-abs"]

# Seconds a normal client may wait for an answer while hostile clients are busy.
SERVED_WITHIN = 3.0
BYE_PER_ADDR = "* BYE [UNAVAILABLE] Too many connections from your address"
TOO_BIG = {"error": {"code": "too_big", "message": "the request body exceeds the limit"}}


class HostileTest(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user, cls.password, cls.token = cls.daemon.credentials()
        cls.data = os.path.join(cls.daemon.data_dir, "data")
        # Jobs acknowledged before the attacks: each must survive them.
        cls.acked_http = []
        cls.acked_imap = []
        status, _ = cls.request("PUT", "/v1/queues/keep")
        assert status == 201, status
        for i in range(5):
            status, reply = cls.request("POST", "/v1/queues/keep/messages",
                                        json.dumps({"body": {"n": i}}).encode())
            assert status == 201, (status, reply)
            cls.acked_http.append(reply["id"])
        c = cls.daemon.raw()
        c.command("CREATE kept")
        for i in range(3):
            body = "Subject: kept %d\r\n\r\nbody %d\r\n" % (i, i)
            c.send("a%d APPEND kept {%d+}\r\n%s\r\n" % (i, len(body), body))
            _, tagged = c.read_until("a%d" % i)
            m = re.match(r"a\d OK \[APPENDUID \d+ (\d+)\]", tagged)
            assert m, tagged
            cls.acked_imap.append(int(m.group(1)))
        c.close()

    # --- helpers ---

    def assert_no_escape(self):
        """No mailbox name became a path: nothing exists where a name would lead if it were
        joined to the data folder, its parent or the root, and the data folder holds no file
        named after a name's levels."""
        bases = (self.data, self.daemon.data_dir, os.path.dirname(self.daemon.data_dir), "/")
        for name in TRAVERSAL_NAMES + HTTP_NAMES:
            for base in bases:
                path = os.path.normpath(os.path.join(base, name))
                if path not in bases:
                    self.assertFalse(os.path.lexists(path), path)
        levels = {level for name in TRAVERSAL_NAMES + HTTP_NAMES for level in name.split("/")} - {"", ".", ".."}
        for _, dirs, files in os.walk(self.daemon.data_dir):
            self.assertFalse(levels & set(dirs + files), (dirs, files))

    @classmethod
    def request(cls, method, path, body=None, headers=None):
        """One HTTP request on a fresh connection: (status, parsed JSON body or raw bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", cls.daemon.ports["http"],
                                       timeout=harness.PATIENCE)
        h = {"Authorization": "Bearer " + cls.token, "Content-Type": "application/json"}
        h.update(headers or {})
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            try:
                return r.status, json.loads(data) if data else None
            except ValueError:
                return r.status, data
        finally:
            c.close()

    def raw(self, login=True):
        c = self.daemon.raw(login)
        self.addCleanup(c.close)
        return c

    def exchange(self, c, data, tag):
        """Sends raw bytes and returns the tagged line for tag."""
        c.send(data)
        return c.read_until(tag)[1]

    def log(self):
        with open(self.daemon.err_path, errors="replace") as f:
            return f.read()

    def assert_served(self):
        """A normal client logs in, selects, fetches and gets HTTP answers within the bound."""
        start = time.monotonic()
        c = RawImap(self.daemon.ports["imap"], timeout=SERVED_WITHIN)
        try:
            c.login(self.user, self.password)
            _, tagged = c.command("SELECT keep")
            self.assertIn("OK", tagged)
            _, tagged = c.command("UID FETCH 1:* (FLAGS)")
            self.assertRegex(tagged, r"^t\d+ OK ")
        finally:
            c.close()
        status, _ = self.request("GET", "/v1/queues/keep")
        self.assertEqual(status, 200)
        self.assertLess(time.monotonic() - start, SERVED_WITHIN)

    def assert_in_sync(self, c):
        """The connection still reads commands from the right place."""
        _, tagged = c.command("NOOP")
        self.assertRegex(tagged, r"^t\d+ OK NOOP")

    # --- IMAP: sizes ---

    def test_imap_line_length(self):
        pre = self.raw(login=False)
        self.assertEqual(self.exchange(pre, b"p1 " + b"X" * MAX_LINE_PREAUTH + b"\r\n", "p1"),
                         "p1 NO [TOOBIG] Line too long")
        self.assert_in_sync(pre)
        post = self.raw()
        # The same line is fine once logged in (NOOP then refuses the argument) ...
        self.assertEqual(self.exchange(post, b"p2 NOOP " + b"X" * MAX_LINE_PREAUTH + b"\r\n",
                                       "p2"), "p2 BAD Too many arguments")
        # ... up to the larger limit.
        self.assertEqual(self.exchange(post, b"p3 NOOP " + b"X" * MAX_LINE + b"\r\n", "p3"),
                         "p3 NO [TOOBIG] Line too long")
        self.assert_in_sync(post)
        self.assertIn("p3 refused: Line too long", self.log())

    def test_imap_literal_sizes(self):
        pre = self.raw(login=False)
        self.assertEqual(self.exchange(pre, b"l1 LOGIN {-1}\r\n", "l1"), "l1 BAD Invalid literal")
        self.assertEqual(self.exchange(pre, b"l2 LOGIN {99999999999999999999}\r\n", "l2"),
                         "l2 NO [TOOBIG] Literal too large")
        self.assertEqual(self.exchange(pre, b"l3 LOGIN {%d}\r\n" % (MAX_LITERAL_PREAUTH + 1),
                                       "l3"), "l3 NO [TOOBIG] Literal too large")
        # A refused non-synchronising literal is read and dropped: the stream stays in sync.
        n = MAX_LITERAL_PREAUTH + 1
        self.assertEqual(self.exchange(pre, b"l4 LOGIN {%d+}\r\n%s\r\n" % (n, b"x" * n), "l4"),
                         "l4 NO [TOOBIG] Literal too large")
        self.assert_in_sync(pre)
        # After login the same size is accepted: the continuation comes.
        post = self.raw()
        post.send(b"l5 NOOP {%d}\r\n" % n)
        self.assertEqual(post.readline(), "+ Ready for literal data")
        self.assertEqual(self.exchange(post, b"x" * n + b"\r\n", "l5"), "l5 BAD Too many arguments")
        self.assert_in_sync(post)
        self.assertIn("l3 refused: Literal too large", self.log())

    def test_imap_appendlimit(self):
        c = self.raw()
        caps = c.command("CAPABILITY")[0][0]
        self.assertIn("APPENDLIMIT=%d" % MAX_MESSAGE, caps)
        c.command("CREATE big")
        self.assertEqual(self.exchange(c, b"b1 APPEND big {%d}\r\n" % (MAX_MESSAGE + 1), "b1"),
                         "b1 NO [TOOBIG] the input exceeds a size limit")
        n = MAX_MESSAGE + 1
        c.send(b"b2 APPEND big {%d+}\r\n" % n)
        chunk = b"x" * (1 << 20)
        left = n
        while left > 0:
            part = chunk[:left]
            c.send(part)
            left -= len(part)
        self.assertEqual(self.exchange(c, b"\r\n", "b2"),
                         "b2 NO [TOOBIG] the input exceeds a size limit")
        self.assert_in_sync(c)
        # A size that cannot even be skipped ends the connection, with a reason.
        c.send(b"b3 APPEND big {99999999999999999999+}\r\n")
        self.assertEqual(c.readline(), "b3 NO [TOOBIG] Literal too large")
        self.assertEqual(c.readline(), "* BYE Protocol error")
        self.assertEqual(c.sock.recv(1), b"")
        _, tagged = self.raw().command("STATUS big (MESSAGES)")
        self.assertRegex(tagged, r"OK")

    def test_imap_nesting_and_arguments(self):
        c = self.raw()
        deep = b"(" * (MAX_NESTING + 1) + b")" * (MAX_NESTING + 1)
        self.assertEqual(self.exchange(c, b"n1 NOOP " + deep + b"\r\n", "n1"),
                         "n1 BAD [LIMIT] Too deeply nested")
        fits = b"(" * MAX_NESTING + b")" * MAX_NESTING
        self.assertEqual(self.exchange(c, b"n2 NOOP " + fits + b"\r\n", "n2"),
                         "n2 BAD Too many arguments")
        self.assertEqual(self.exchange(c, b"n3 NOOP " + b"a " * (MAX_ARGS + 1) + b"\r\n", "n3"),
                         "n3 BAD [LIMIT] Too many arguments")
        self.assertEqual(self.exchange(c, b"n4 SEARCH " + b"NOT " * 100 + b"ALL\r\n", "n4"),
                         "n4 BAD No mailbox selected")
        c.command("SELECT keep")
        self.assertEqual(self.exchange(c, b"n5 SEARCH " + b"NOT " * 100 + b"ALL\r\n", "n5"),
                         "n5 BAD Search keys nested too deeply")
        self.assert_in_sync(c)
        self.assertIn("n1 refused: Too deeply nested", self.log())

    # --- IMAP: malformed input ---

    def test_imap_malformed(self):
        pre = self.raw(login=False)
        for data, tag, answer in [
                (b"m1 NOOP (((\r\n", "m1", "m1 BAD Missing ')'"),
                (b"m2 NOOP )\r\n", "m2", "m2 BAD Unexpected ')'"),
                (b"m3 NO\x00OP\r\n", "m3", "m3 BAD NUL byte in command"),
                (b'm4 LOGIN "a\x00b" c\r\n', "m4", "m4 BAD NUL byte in command"),
                (b"m5 LOGIN \xe9t\xe9 x\r\n", "m5", "m5 BAD 8-bit character in command"),
                (b'm6 LOGIN "a\rb" c\r\n', "m6", "m6 BAD Unterminated quoted string"),
                (b"m7 SELECT INBOX\r\n", "m7", "m7 BAD Log in first"),
                (b"m8 FROB\r\n", "m8", "m8 BAD Unknown command"),
                (b"m9 LOGIN a {1+\r\n", "m9", "m9 BAD Invalid literal")]:
            self.assertEqual(self.exchange(pre, data, tag), answer, data)
        self.assertEqual(self.exchange(pre, b"\r\n* NOOP\r\n", "*"), "* BAD Empty command line")
        self.assert_in_sync(pre)
        post = self.raw()
        for data, tag, answer in [
                (b"w1 LOGIN a b\r\n", "w1", "w1 BAD Command not valid in this state"),
                (b"w2 FETCH 1 FLAGS\r\n", "w2", "w2 BAD No mailbox selected"),
                (b"w3 STORE 1 +FLAGS (\xe9)\r\n", "w3", "w3 BAD 8-bit character in command"),
                (b"w4 SELECT &Jjo\r\n", "w4", "w4 BAD Invalid mailbox name encoding"),
                (b"w5 SELECT &AGE-\r\n", "w5", "w5 BAD Invalid mailbox name encoding"),
                (b"w6 CREATE &AAA-\r\n", "w6", "w6 BAD Invalid mailbox name encoding"),
                (b"w7 CREATE &2D3eAQ\r\n", "w7", "w7 BAD Invalid mailbox name encoding")]:
            self.assertEqual(self.exchange(post, data, tag), answer, data)
        self.assert_in_sync(post)

    def test_imap_sequence_sets(self):
        c = self.raw()
        c.command("SELECT keep")
        for set_ in ("0", "4294967296", "*:*:*", "1,,2", "1:4294967295:3", "-1", "1:0x10", ""):
            tagged = self.exchange(c, ("s1 UID FETCH %s FLAGS\r\n" % set_).encode(), "s1")
            self.assertIn(tagged, ("s1 BAD Invalid sequence set", "s1 BAD Missing arguments"),
                          set_)
        self.assertEqual(self.exchange(c, b"s2 FETCH 1:4294967295 FLAGS\r\n", "s2"),
                         "s2 BAD Message sequence number out of range")
        start = time.monotonic()
        untagged, tagged = c.command("UID FETCH 1:4294967295,1:4294967295,9:99999999 (UID)")
        self.assertRegex(tagged, r"OK FETCH completed")
        self.assertEqual(len(untagged), len(self.acked_http))
        untagged, tagged = c.command("UID STORE 1:4294967295 +FLAGS.SILENT (seen-by-hostile)")
        self.assertRegex(tagged, r"OK")
        untagged, tagged = c.command("UID SEARCH UID 1:4294967295 NOT UID 4294967295")
        self.assertRegex(tagged, r"OK")
        self.assertLess(time.monotonic() - start, SERVED_WITHIN)
        self.assert_in_sync(c)

    # --- names ---

    def test_names_imap(self):
        c = self.raw()
        # Traversal-looking names are plain names: they never become paths.
        for name in TRAVERSAL_NAMES[:6]:
            _, tagged = c.command('CREATE "%s"' % name)
            self.assertRegex(tagged, r"^t\d+ OK CREATE completed", name)
            _, tagged = c.command('STATUS "%s" (MESSAGES)' % name)
            self.assertRegex(tagged, r"OK", name)
        for name in TRAVERSAL_NAMES[6:] + ["n" * 256, "a%b", "a*b"]:
            _, tagged = c.command('CREATE "%s"' % name)
            self.assertRegex(tagged, r"^t\d+ NO \[CANNOT\] ", name)
        self.assertEqual(self.exchange(c, b'c1 CREATE "a\x00b"\r\n', "c1"),
                         "c1 BAD NUL byte in command")
        self.assertEqual(self.exchange(c, b'c2 CREATE "a\nb"\r\n', "c2"),
                         "c2 BAD Unterminated quoted string")
        # CR, LF and other controls inside a literal are refused by the name decoding.
        for raw in (b"a\rb", b"a\nb", b"a\x01b", b"a\x7fb", b"a\x85b"):
            c.send(b"c3 CREATE {%d+}\r\n%s\r\n" % (len(raw), raw))
            self.assertEqual(c.read_until("c3")[1], "c3 BAD Invalid mailbox name encoding", raw)
        c.send(b"c4 CREATE {3+}\r\na\x00b\r\n")
        self.assertEqual(c.read_until("c4")[1], "c4 BAD NUL byte in literal")
        self.assert_in_sync(c)
        self.assert_no_escape()

    def test_names_http(self):
        ok = {"..%2Fhq-up": "../hq-up", "hq-a%2F..%2F..%2Fhq-b": "hq-a/../../hq-b", "%2E%2E": "..",
              ".": ".", "..%2F..%2F..%2F..%2Fetc%2Fhq-passwd": "../../../../etc/hq-passwd"}
        for path, name in ok.items():
            status, reply = self.request("PUT", "/v1/queues/" + path)
            self.assertIn(status, (200, 201), path)
            self.assertEqual(reply["name"], name)
        invalid = ["%2Fhq-abs", "a%00b", "%00", "a%0Db", "a%0Ab", "a%2F%2Fb", "n" * 256, "a%2",
                   "a%zz", "%ff%fe", "a%2Fdead", "a%25b", "%2A"]
        for path in invalid:
            status, reply = self.request("PUT", "/v1/queues/" + path)
            self.assertEqual(status, 400, path)
            self.assertEqual(reply["error"]["code"], "invalid", path)
        for path in invalid[:6]:
            status, reply = self.request("POST", "/v1/queues/%s/messages" % path, b'{"body":1}')
            self.assertEqual(status, 400, path)
        self.assert_no_escape()

    # --- connections ---

    def test_per_address_limit(self):
        """Loopback is exempt (a local proxy brings every client from there), so this runs a
        second daemon on this host's own non-loopback address and connects to that."""
        addr = local_address()
        if addr is None:
            self.skipTest("no non-loopback IPv4 address on this host")
        d = harness.Daemon(extra_args=["--imap", "%s:0" % addr, "--allow-plaintext"]).start()
        self.addCleanup(d.cleanup)
        port = d.ports["imap"]
        conns = []
        try:
            for i in range(MAX_PER_ADDR + 1):
                s = socket.create_connection((addr, port), timeout=5)
                conns.append(s)
                line = b""
                while not line.endswith(b"\r\n"):
                    part = s.recv(4096)
                    if not part:
                        break
                    line += part
                if i < MAX_PER_ADDR:
                    self.assertTrue(line.startswith(b"* OK"), (i, line))
            self.assertEqual(line.decode(), BYE_PER_ADDR + "\r\n")
            self.assertEqual(conns[-1].recv(1), b"")
            # HTTP is not affected, and a freed slot is usable again.
            self.assertEqual(self.request("GET", "/healthz")[0], 200)
            conns.pop().close()
            conns.pop().close()
            deadline = time.monotonic() + 5
            while True:
                c = RawImap(port, host=addr)
                if c.greeting.startswith("* OK"):
                    user, password, _ = d.credentials()
                    c.login(user, password)
                    c.close()
                    break
                c.close()
                self.assertLess(time.monotonic(), deadline, "a freed slot stayed taken")
                time.sleep(0.05)
        finally:
            for s in conns:
                s.close()
        status = d.stop()
        self.assertEqual(status, 0)
        self.assertRegex(d.stderr, r"connection refused: %d sessions from %s" % (
            MAX_PER_ADDR, re.escape(addr)))

    def test_slowloris(self):
        """Many clients dribble one byte at a time; the others are served meanwhile, and the
        slow ones get their answers once their commands are complete."""
        port = self.daemon.ports["imap"]
        slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
        try:
            for s in slow:
                self.assertTrue(s.recv(4096).startswith(b"* OK"))
            command = b"slow CAPABILITY\r\n"
            stop = threading.Event()

            def dribble():
                for ch in command:
                    for s in slow:
                        s.sendall(bytes([ch]))
                    if stop.wait(0.1):
                        return

            t = threading.Thread(target=dribble)
            t.start()
            try:
                for _ in range(3):
                    self.assert_served()
            finally:
                t.join()
            for s in slow:
                data = b""
                while b"slow OK" not in data:
                    part = s.recv(4096)
                    self.assertTrue(part, "a slow client lost its answer")
                    data += part
                self.assertIn(b"* CAPABILITY IMAP4rev1", data)
            # A line dribbled past the limit is skipped, not held, and answered at its end.
            s = slow[0]
            s.sendall(b"e1 ")
            for _ in range(MAX_LINE_PREAUTH // 1024 + 1):
                s.sendall(b"x" * 1024)
            s.sendall(b"\r\n")
            data = b""
            while b"\r\n" not in data:
                data += s.recv(4096)
            self.assertEqual(data, b"e1 NO [TOOBIG] Line too long\r\n")
        finally:
            for s in slow:
                s.close()

    def test_non_reading_flood(self):
        """A client pipelines FETCH commands and reads nothing: the server stops reading it
        once its replies fill the output limit, serves everyone else, and when the client
        finally reads, every reply is there, complete and in order."""
        self.assertEqual(self.request("PUT", "/v1/queues/flood")[0], 201)
        body = b"Subject: big\r\n\r\n" + b"y" * (32 * 1024)
        for _ in range(2):
            status, _ = self.request("POST", "/v1/queues/flood/messages", body,
                                     {"Content-Type": "message/rfc822"})
            self.assertEqual(status, 201)
        pid = self.daemon.proc.pid
        c = self.raw()
        c.command("SELECT flood")
        rss_before = rss_kib(pid)
        count = 600  # each reply holds both bodies: about 40 MB in all, 10 times the limit
        c.sock.setblocking(False)
        pending = b"".join(b"f%d UID FETCH 1:* (BODY.PEEK[])\r\n" % i for i in range(count))
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            try:
                pending = pending[c.sock.send(pending):]
            except BlockingIOError:
                time.sleep(0.05)
        c.sock.settimeout(10)
        time.sleep(0.5)
        # Output beyond the limit is not built: the server's memory stays far below the
        # 40 MB the replies add up to.
        grown_mib = (rss_kib(pid) - rss_before) / 1024
        self.assertLess(grown_mib, 24, "the server buffered replies nobody reads")
        self.assert_served()
        if pending:
            c.sock.setblocking(True)
            c.send(pending)
        for i in range(count):
            untagged, tagged = c.read_until("f%d" % i)
            self.assertEqual(tagged, "f%d OK FETCH completed" % i)
            self.assertEqual(len(untagged), 2)
            self.assertTrue(all(len(u) > len(body) for u in untagged))
        self.assert_in_sync(c)

    def test_fetch_reply_cap(self):
        """One FETCH builds at most IMAPQ_MAX_COMMAND_OUTPUT (64 MiB) of reply: past it the
        command stops with NO [LIMIT] after whole FETCH responses, and the session goes on."""
        self.assertEqual(self.request("PUT", "/v1/queues/huge")[0], 201)
        body = b"Subject: huge\r\n\r\n" + b"z" * (8 * 1024 * 1024)
        for _ in range(10):
            status, _ = self.request("POST", "/v1/queues/huge/messages", body,
                                     {"Content-Type": "message/rfc822"})
            self.assertEqual(status, 201)
        c = self.raw()
        c.sock.settimeout(60)
        c.command("SELECT huge")
        c.send(b"big UID FETCH 1:* (BODY.PEEK[])\r\n")
        fetched = 0
        while True:
            line = c.readline()
            if line.startswith("big "):
                break
            if " FETCH " in line:
                fetched += 1
        self.assertEqual(line, "big NO [LIMIT] FETCH reply too large; fetch the rest in "
                               "smaller sets")
        self.assertTrue(8 <= fetched < 10, fetched)
        self.assertIn("FETCH reply cut after", self.log())
        self.assert_in_sync(c)

    def test_copy_limit(self):
        """One COPY or MOVE copies at most IMAPQ_MAX_COPY_MESSAGES (100,000) messages, counted
        over the whole set: a larger set gets NO [LIMIT] and copies nothing; a set at the limit
        copies."""
        for q in ("many", "many-copy"):
            self.assertEqual(self.request("PUT", "/v1/queues/" + q)[0], 201)
        batch = json.dumps({"messages": [{"body": "j"}] * 1000}).encode()
        for _ in range(100):
            status, _ = self.request("POST", "/v1/queues/many/messages", batch)
            self.assertEqual(status, 201)
        self.assertEqual(self.request("POST", "/v1/queues/many/messages", b'{"body":"j"}')[0],
                         201)
        c = self.raw()
        c.sock.settimeout(60)
        c.command("SELECT many")
        for cmd in ("UID COPY 1:* many-copy", "UID MOVE 1:50000,50001:* many-copy",
                    "COPY 1,2:100001 many-copy"):
            _, tagged = c.command(cmd, tag="big")
            self.assertEqual(tagged, "big NO [LIMIT] %s at most 100000 messages at once; split "
                             "the set" % cmd.replace("UID ", "").split()[0], cmd)
        def ready():
            status, reply = self.request("GET", "/v1/queues/many-copy")
            self.assertEqual(status, 200, reply)
            return reply["stats"]["ready"]

        self.assertEqual(ready(), 0)
        _, tagged = c.command("UID COPY 2:* many-copy", tag="ok")
        self.assertRegex(tagged, r"^ok OK \[COPYUID \d+ 2:100001 1:100000\] COPY completed$")
        _, tagged = c.command("UID MOVE 1 many-copy", tag="ok")
        self.assertIn("ok OK MOVE completed", tagged)
        self.assertEqual(ready(), 100001)
        self.assert_in_sync(c)

    def test_non_reading_idle(self):
        """A client IDLEs and reads nothing while another changes every message again and
        again: the server stops queueing updates at the output limit and catches up in one go
        once the client reads, so the client gets a fraction of the updates' bytes and its view
        is right at the end."""
        messages, rounds = 2000, 200
        w = self.raw()
        w.command("CREATE idlers")
        msg = "Subject: m\r\n\r\nx\r\n"
        w.send("".join("a%d APPEND idlers {%d+}\r\n%s\r\n" % (i, len(msg), msg)
                       for i in range(messages)))
        self.assertRegex(w.read_until("a%d" % (messages - 1))[1], "OK")
        w.command("SELECT idlers")
        idler = socket.socket()
        self.addCleanup(idler.close)
        idler.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        idler.settimeout(harness.PATIENCE)
        idler.connect(("127.0.0.1", self.daemon.ports["imap"]))
        reader = LineReader(idler)
        reader.line()
        idler.sendall(("l LOGIN %s %s\r\ns SELECT idlers\r\ni IDLE\r\n" % (
            self.user, self.password)).encode())
        reader.until(b"s OK")
        self.assertEqual(reader.line(), b"+ idling")
        for r in range(rounds):
            _, tagged = w.command("UID STORE 1:* %sFLAGS.SILENT (\\Flagged)" % "+-"[r % 2])
            self.assertRegex(tagged, "OK")
        w.command("UID STORE 7 +FLAGS.SILENT (\\Seen)")
        self.assert_served()
        idler.sendall(b"DONE\r\n")
        received = reader.until(b"i OK IDLE terminated")
        updates = rounds * messages * len(b"* 1000 FETCH (UID 1000 FLAGS (\\Flagged))\r\n")
        self.assertLess(len(received), updates / 2, "every update was queued")
        self.assertRegex(received.rsplit(b"* 7 FETCH", 1)[1].split(b"\r\n")[0],
                         rb"FLAGS \(\\Seen\)")
        idler.sendall(b"f UID FETCH 7 FLAGS\r\n")
        self.assertIn(b"FLAGS (\\Seen)", reader.until(b"f OK"))

    # --- HTTP ---

    def test_http_json_limits(self):
        deep = b"[" * (HTTP_MAX_JSON_DEPTH + 1) + b"]" * (HTTP_MAX_JSON_DEPTH + 1)
        status, reply = self.request("POST", "/v1/queues/keep/claims", deep)
        self.assertEqual((status, reply["error"]["message"]), (400, "JSON nested too deeply"))
        fits = b"[" * HTTP_MAX_JSON_DEPTH + b"]" * HTTP_MAX_JSON_DEPTH
        status, reply = self.request("POST", "/v1/queues/keep/claims", fits)
        self.assertEqual((status, reply["error"]["message"]),
                         (400, "the body must be a JSON object"))
        deep_job = b'{"body":' + b"[" * 100 + b"]" * 100 + b"}"
        status, reply = self.request("POST", "/v1/queues/keep/messages", deep_job)
        self.assertEqual(status, 400)
        for body, message in [(b'{"max":', "the body is not valid JSON"),
                              (b"\x00", "the body is not valid UTF-8 (or holds a NUL byte)"),
                              (b'{"max":"\xff"}',
                               "the body is not valid UTF-8 (or holds a NUL byte)")]:
            status, reply = self.request("POST", "/v1/queues/keep/claims", body)
            self.assertEqual((status, reply["error"]["message"]), (400, message), body)
        status, reply = self.request("POST", "/v1/queues/keep/claims", b'{"max":1e999}')
        self.assertEqual(status, 400)
        status, reply = self.request("POST", "/v1/queues/keep/claims", b'{"max":101}')
        self.assertEqual(status, 400)
        status, reply = self.request("POST", "/v1/queues/keep/claims", b'{"max":1,"wait":31}')
        self.assertEqual(status, 400)
        batch = {"messages": [{"body": i} for i in range(1001)]}
        status, reply = self.request("POST", "/v1/queues/keep/messages",
                                     json.dumps(batch).encode())
        self.assertEqual(status, 400)
        status, reply = self.request("GET", "/v1/queues/keep/messages?state=ready&limit=1001")
        self.assertEqual(status, 400)
        for path in ("/v1/queues/keep/messages/4294967296/ack", "/v1/queues/keep/messages/0/ack",
                     "/v1/queues/keep/messages/-1/ack", "/v1/queues/keep/messages/1e3/ack"):
            status, reply = self.request("POST", path, b'{"receipt":"1-1"}')
            self.assertEqual(status, 400, path)

    def test_http_body_limits(self):
        for ctype, size in (("application/json", HTTP_MAX_JSON + 1),
                            ("text/plain", HTTP_MAX_BODY + 1)):
            s = socket.create_connection(("127.0.0.1", self.daemon.ports["http"]), timeout=10)
            try:
                s.sendall(("POST /v1/queues/keep/messages HTTP/1.1\r\nHost: x\r\n"
                           "Authorization: Bearer %s\r\nContent-Type: %s\r\n"
                           "Content-Length: %d\r\n\r\n" % (self.token, ctype, size)).encode())
                s.sendall(b"x" * 65536)
                status, body = read_http_reply(s)
                self.assertEqual(status, 413, ctype)
                self.assertEqual(json.loads(body), TOO_BIG)
            finally:
                s.close()
        # Without a length the body is counted as it comes (chunked).
        s = socket.create_connection(("127.0.0.1", self.daemon.ports["http"]), timeout=10)
        try:
            s.sendall(("POST /v1/queues/keep/messages HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n" % self.token).encode())
            chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
            for _ in range(HTTP_MAX_JSON // (1 << 20) + 1):
                s.sendall(chunk)
            s.sendall(b"0\r\n\r\n")
            status, body = read_http_reply(s)
            self.assertEqual(status, 413)
            self.assertEqual(json.loads(body), TOO_BIG)
        finally:
            s.close()
        status, reply = self.request("GET", "/v1/queues/keep", headers={"X-Big": "a" * 20000})
        self.assertEqual(status, 431)

    def test_http_per_ip_limit(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = HTTP_MAX_PER_IP + 64
        if soft < want:
            if hard != resource.RLIM_INFINITY and hard < want:
                self.skipTest("too few file descriptors (%d) for %d connections" % (hard, want))
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        port = self.daemon.ports["http"]
        conns = []
        try:
            for _ in range(HTTP_MAX_PER_IP):
                conns.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            # Every one is served, so the daemon has taken them all before the one too many.
            for s in conns:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            for s in conns:
                self.assertEqual(read_http_reply(s)[0], 200)
            extra = socket.create_connection(("127.0.0.1", port), timeout=5)
            conns.append(extra)
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(extra.recv(1), b"")
            except ConnectionResetError:
                pass
            imap = RawImap(self.daemon.ports["imap"])
            imap.close()
            self.assertEqual(imap.greeting[:4], "* OK")
        finally:
            for s in conns:
                s.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    break
            except (ConnectionError, http.client.HTTPException):
                pass
            self.assertLess(time.monotonic(), deadline, "HTTP did not recover")
            time.sleep(0.05)
        self.assertIn("http: Server reached connection limit", self.log())

    # --- last: nothing was lost ---

    def test_zz_survivors(self):
        self.assertIsNone(self.daemon.proc.poll(), "imapqd died")
        self.assert_served()
        status, reply = self.request("GET", "/v1/queues/keep/messages?state=ready&limit=1000")
        self.assertEqual(status, 200)
        ids = {m["id"] for m in reply["messages"]}
        self.assertTrue(set(self.acked_http) <= ids, (self.acked_http, ids))
        c = self.raw()
        c.command("SELECT kept")
        untagged, tagged = c.command("UID SEARCH ALL")
        self.assertRegex(tagged, "OK")
        found = [int(x) for x in untagged[0].split()[2:]]
        self.assertEqual(found, self.acked_imap)
        self.assert_no_escape()
        self.assertNotIn("AddressSanitizer", self.log())
        self.assertNotIn("runtime error", self.log())


def local_address():
    """This host's IPv4 address on its default route, or None (a UDP connect sends nothing)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("198.51.100.1", 9))
        addr = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


class LineReader:
    """Reads a raw socket up to given lines, counting the bytes."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            part = self.sock.recv(65536)
            if not part:
                raise ConnectionError("closed")
            self.buf += part
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def until(self, prefix):
        """Everything up to and including the line that starts with prefix."""
        out = []
        while True:
            line = self.line()
            out.append(line + b"\r\n")
            if line.startswith(prefix):
                return b"".join(out)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def read_http_reply(s):
    """Reads one HTTP/1.1 reply with a Content-Length: (status, body bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = s.recv(65536)
        if not part:
            raise ConnectionError("closed before the reply: %r" % data)
        data += part
    head, body = data.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    size = int(m.group(1)) if m else 0
    while len(body) < size:
        part = s.recv(65536)
        if not part:
            break
        body += part
    return status, body[:size]


if __name__ == "__main__":
    harness.main()
