"""Password checks run off imapqd's event loop: with a users file made by `imapq user add` (full
PBKDF2 cost), six logins sent at once on six connections are checked one after another on the
password thread, while a connection that is already logged in keeps being served: its NOOP is
answered before the last of the six logins. Only the order of the answers is checked, never
their timing. Connections that hang up while their login is being checked leave the daemon
serving and exiting cleanly."""
import os
import selectors
import subprocess
import tempfile
import unittest

import harness
from rawimap import RawImap

# Logins sent at once; with 210,000 iterations each the last is answered well after the first.
LOGINS = 6


class LoginOffloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="imapq-offload-")
        cls.users_path = os.path.join(cls.dir, "users")
        imapq = os.path.join(os.path.dirname(os.path.abspath(harness.IMAPQD)), "imapq")
        # Default iterations: the real cost of a check is the point of the test.
        r = subprocess.run([imapq, "user", "add", "worker", "--roles", "consumer",
                            "--users", cls.users_path], input="worker-pw\n",
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        cls.daemon = harness.Daemon(extra_args=["--users", cls.users_path]).start()

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        cls.daemon.cleanup()
        harness.shutil.rmtree(cls.dir, ignore_errors=True)
        assert status == 0, "imapqd exited with %s:\n%s" % (status, cls.daemon.stderr)

    def connect(self):
        c = RawImap(self.daemon.ports["imap"], timeout=harness.PATIENCE)
        self.addCleanup(c.close)
        return c

    def test_noop_answered_while_logins_are_checked(self):
        ready = self.connect()
        _, tagged = ready.command('LOGIN "worker" "worker-pw"')
        self.assertIn(" OK ", tagged)
        waiting = [self.connect() for _ in range(LOGINS)]
        for i, c in enumerate(waiting):
            c.send('l%d LOGIN "worker" "worker-pw"\r\n' % i)
        ready.send("n1 NOOP\r\n")

        # Record which connection's tagged reply came when.
        tags = {ready: "n1"}
        tags.update({c: "l%d" % i for i, c in enumerate(waiting)})
        sel = selectors.DefaultSelector()
        for c in tags:
            sel.register(c.sock, selectors.EVENT_READ, c)
        order, replies = [], {}
        while len(order) < len(tags):
            events = sel.select(timeout=harness.PATIENCE)
            self.assertTrue(events, "no reply within %s s; got %s" % (harness.PATIENCE, order))
            for key, _ in events:
                c = key.data
                if c in replies:
                    continue
                # Lines arrive whole: read what came, up to the tagged reply if it is there.
                untagged, tagged = c.read_until(tags[c])
                replies[c] = tagged
                order.append(tags[c])
                sel.unregister(c.sock)
        sel.close()

        for c in waiting:
            self.assertIn(" OK ", replies[c], order)
        self.assertIn(" OK ", replies[ready])
        last_login = max(order.index("l%d" % i) for i in range(LOGINS))
        self.assertLess(order.index("n1"), last_login, order)

    def test_hang_up_while_checked(self):
        for i in range(3):
            c = self.connect()
            c.send('h%d LOGIN "worker" "worker-pw"\r\n' % i)
            c.close()
        c = self.connect()
        _, tagged = c.command('LOGIN "worker" "worker-pw"')
        self.assertIn(" OK ", tagged)
        _, tagged = c.command("NOOP")
        self.assertIn(" OK ", tagged)


if __name__ == "__main__":
    harness.main()
