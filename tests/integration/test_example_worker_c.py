"""examples/worker.c (build/examples/worker, on the C client library) against a real imapqd: it
drains jobs enqueued over IMAP and HTTP and acks them, releases a failing job until it
dead-letters after max attempts, wakes from IDLE for new work, honours --max-jobs, stops cleanly
on SIGTERM and reports a refused login."""
import imaplib
import os
import re
import signal
import subprocess
import time

import harness

# Seconds a test waits for the daemon or a worker before it fails.
PATIENCE = harness.PATIENCE


def worker_path():
    """The worker binary sits in the build folder's examples/ beside the imapqd it was built with."""
    return os.path.join(os.path.dirname(os.path.abspath(harness.IMAPQD)), "examples", "worker")


class ExampleWorkerCTest(harness.ApiTestCase):

    def worker(self, queue, *extra, password=None):
        user, pw, _ = self.daemon.credentials()
        return subprocess.Popen([worker_path(), "--host", "127.0.0.1",
                                 "--port", str(self.daemon.ports["imap"]), "--user", user,
                                 "--password=" + (password or pw), "--queue", queue] + list(extra),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def append(self, queue, text):
        """Enqueues one job over IMAP: its UID."""
        m = self.daemon.imaplib()
        try:
            msg = ("Subject: job\r\n\r\n%s" % text).encode()
            typ, data = m.append('"%s"' % queue, None, None, msg)
            self.assertEqual(typ, "OK", data)
            return int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
        finally:
            m.logout()

    def test_binary_exists(self):
        self.assertTrue(os.access(worker_path(), os.X_OK), worker_path())

    def test_drains_acks_and_dead_letters(self):
        q = "cjobs"
        status, _ = self.http("PUT", "/v1/queues/" + q, {"lease": 30, "max_attempts": 2})
        self.assertEqual(status, 201)
        uids = {self.append(q, "imap job one"): "imap job one"}
        status, reply = self.http("POST", "/v1/queues/%s/messages" % q, ctype="text/plain",
                                  raw=b"http job two")
        self.assertEqual(status, 201, reply)
        uids[int(reply["id"])] = "http job two"
        bad = self.append(q, "this one will fail")
        status, reply = self.http("POST", "/v1/queues/%s/messages" % q, {"n": 4})
        self.assertEqual(status, 201, reply)
        uids[int(reply["id"])] = '{"n": 4}'

        status, out, err = self.finish(self.worker(q, "--once"))
        self.assertEqual(status, 0, out + err)
        self.assertEqual(err, "")
        for uid, text in uids.items():
            self.assertIn("job %d: %s\n" % (uid, text), out)
        self.assertEqual(sorted(int(u) for u in re.findall(r"^job (\d+): acked$", out, re.M)),
                         sorted(uids))
        self.assertIn("job %d: failed, released after attempt 1\n" % bad, out)
        self.assertIn("job %d: failed, released after attempt 2\n" % bad, out)
        # Three acks and two claims of the failing job.
        self.assertIn("handled 5 jobs\n", out)

        dead = self.wait_for("the dead letter", lambda: self.stats(q)["dead"] == 1)
        self.assertTrue(dead)
        stats = self.stats(q)
        self.assertEqual((stats["ready"], stats["claimed"], stats["acks"], stats["claims"]),
                         (0, 0, 3, 5))
        self.assertEqual(stats["dead_lettered"], 1)

    def test_idle_wakes_and_sigterm_stops(self):
        q = "cidle"
        self.assertEqual(self.http("PUT", "/v1/queues/" + q)[0], 201)
        w = self.worker(q)
        time.sleep(0.5)  # the worker is in IDLE on the empty queue
        status, reply = self.http("POST", "/v1/queues/%s/messages" % q, ctype="text/plain",
                                  raw=b"wake up")
        self.assertEqual(status, 201)
        self.wait_for("the ack", lambda: self.stats(q)["acks"] == 1)
        time.sleep(0.3)  # back in IDLE
        w.send_signal(signal.SIGTERM)
        status, out, err = self.finish(w)
        self.assertEqual(status, 0, out + err)
        self.assertEqual(err, "")
        self.assertIn("job %s: wake up\njob %s: acked\n" % (reply["id"], reply["id"]), out)
        self.assertTrue(out.endswith("handled 1 job\n"), out)

    def test_max_jobs(self):
        q = "cmax"
        self.assertEqual(self.http("PUT", "/v1/queues/" + q)[0], 201)
        for n in range(3):
            self.assertEqual(self.http("POST", "/v1/queues/%s/messages" % q, {"n": n})[0], 201)
        status, out, err = self.finish(self.worker(q, "--max-jobs", "2"))
        self.assertEqual(status, 0, out + err)
        self.assertIn("handled 2 jobs\n", out)
        self.assertEqual(self.stats(q)["ready"], 1)

    def test_refused_login_and_usage(self):
        status, out, err = self.finish(self.worker("cjobs", "--once", password="wrong"))
        self.assertEqual(status, 1)
        self.assertIn("authentication failed", err)
        r = subprocess.run([worker_path(), "--queue", "x"], capture_output=True, text=True,
                           timeout=PATIENCE)
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage: worker", r.stderr)


class ExampleWorkerCTlsTest(harness.DaemonTestCase):
    """The client library against imapqd's own TLS: implicit TLS and STARTTLS, the server's
    certificate checked against its CA file, and refused without it."""

    @classmethod
    def setUpClass(cls):
        from test_tls import make_pair
        cls.certs = harness.tempfile.mkdtemp(prefix="imapq-wtls-")
        cls.cert, key = make_pair(cls.certs, "server")
        cls.daemon = harness.Daemon(extra_args=["--tls-cert", cls.cert, "--tls-key", key,
                                                "--imaps", "127.0.0.1:0"]).start()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        harness.shutil.rmtree(cls.certs, ignore_errors=True)

    def run_worker(self, port, *extra):
        user, pw, _ = self.daemon.credentials()
        return subprocess.run([worker_path(), "--host", "127.0.0.1", "--port", str(port),
                               "--user", user, "--password=" + pw, "--queue", "tjobs", "--once"]
                              + list(extra), capture_output=True, text=True, timeout=PATIENCE)

    def enqueue(self, text):
        m = self.daemon.imaplib()
        try:
            m.create("tjobs")
            typ, data = m.append("tjobs", None, None, ("Subject: t\r\n\r\n" + text).encode())
            self.assertEqual(typ, "OK", data)
        finally:
            m.logout()

    def test_implicit_tls_and_starttls(self):
        self.enqueue("over implicit TLS")
        r = self.run_worker(self.daemon.ports["imaps"], "--tls", "--ca-file", self.cert)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(": over implicit TLS\n", r.stdout)
        self.enqueue("after STARTTLS")
        r = self.run_worker(self.daemon.ports["imap"], "--starttls", "--ca-file", self.cert)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(": after STARTTLS\n", r.stdout)

    def test_unknown_certificate_refused(self):
        r = self.run_worker(self.daemon.ports["imaps"], "--tls")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertNotEqual(r.stderr, "")


if __name__ == "__main__":
    harness.main()
