"""The programs in examples/ against a real imapqd: curl.sh's walk through the HTTP API, and two
worker.py processes sharing one queue over IMAP (exactly-once acks, releases, dead letters,
IDLE wake-ups, --once, --max-jobs and a clean exit on SIGTERM)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import harness

EXAMPLES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "..", "examples"))
CURL_SH = os.path.join(EXAMPLES, "curl.sh")
WORKER = os.path.join(EXAMPLES, "worker.py")
# Seconds a test waits for the daemon or a worker before it fails.
PATIENCE = harness.PATIENCE


class ExamplesTest(harness.ApiTestCase):

    def peek(self, queue, state):
        status, reply = self.http("GET", "/v1/queues/%s/messages?state=%s&limit=1000&body=true" %
                                  (queue, state))
        self.assertEqual(status, 200, reply)
        return reply["messages"]

    def worker(self, queue, *extra):
        user, password, _ = self.daemon.credentials()
        return subprocess.Popen([sys.executable, WORKER, "--host", "127.0.0.1",
                                 "--port", str(self.daemon.ports["imap"]), "--user", user,
                                 "--password=" + password, "--queue", queue] + list(extra),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, proc):
        """Waits for a worker, which must write nothing on stderr: (exit status, stdout)."""
        status, out, err = super().finish(proc)
        self.assertEqual(err, "", out)
        return status, out

    def run_curl_sh(self, *args, cwd=None):
        return subprocess.run(["bash", CURL_SH] + list(args), capture_output=True, text=True,
                              timeout=PATIENCE, cwd=cwd, env=dict(os.environ, QUEUE="curlsh"))

    def test_curl_sh_walks_one_job_through(self):
        _, _, token = self.daemon.credentials()
        base = "http://127.0.0.1:%d" % self.daemon.ports["http"]
        r = self.run_curl_sh(base, token)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stderr, "")
        out = r.stdout
        self.assertIn('"name":"curlsh"', out)
        self.assertRegex(out, r'\{"id":"(\d+)","queue":"curlsh"\}')
        self.assertRegex(out, r'"state":"claimed","receipt":"\d+-\d+"')
        self.assertRegex(out, r"== ack job \d+ with receipt \d+-\d+\n204\n")
        stats = out.rsplit("== stats\n", 1)[1]
        for field in ('"ready":0', '"claimed":0', '"enqueued":1', '"claims":1', '"acks":1'):
            self.assertIn(field, stats)
        self.assertEqual(self.peek("curlsh", "ready") + self.peek("curlsh", "claimed"), [])

        # Run again from a folder holding imapq-data/credentials: the token comes from there.
        cwd = tempfile.mkdtemp(prefix="imapq-curlsh-")
        try:
            os.symlink(os.path.join(self.daemon.data_dir, "data"),
                       os.path.join(cwd, "imapq-data"))
            r = self.run_curl_sh(base, cwd=cwd)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn('"acks":2', r.stdout)
        finally:
            shutil.rmtree(cwd)

    def test_curl_sh_fails_when_a_step_fails(self):
        base = "http://127.0.0.1:%d" % self.daemon.ports["http"]
        r = self.run_curl_sh(base, "not-a-token")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("unauthorized", r.stderr)
        self.assertNotIn("== enqueue", r.stdout)
        # Nothing listens on port 1: curl cannot connect.
        r = self.run_curl_sh("http://127.0.0.1:1", "x")
        self.assertNotEqual(r.returncode, 0)

    def test_two_workers_share_a_queue(self):
        q = "work"
        status, _ = self.http("PUT", "/v1/queues/" + q, {"lease": 3, "max_attempts": 2})
        self.assertEqual(status, 201)
        # Both workers start on an empty queue, so they are waiting in IDLE when jobs arrive.
        # 20 jobs: 18 acked once each, 2 failing ones claimed and released twice (the second
        # release, after the last attempt, dead-letters them), 22 claims in all, which
        # --max-jobs 11 each adds up to.
        workers = [self.worker(q, "--max-jobs", "11") for _ in range(2)]
        time.sleep(0.5)
        failing = {4, 13}
        ids = {}
        for n in range(20):
            body = {"n": n, "task": "fail" if n in failing else "resize"}
            status, reply = self.http("POST", "/v1/queues/%s/messages" % q, body)
            self.assertEqual(status, 201, reply)
            ids[reply["id"]] = n
        outs = [self.finish(w) for w in workers]
        for status, out in outs:
            self.assertEqual(status, 0, out)
            self.assertIn("handled 11 jobs", out)

        # Each good job was acked exactly once, across both workers.
        log = "".join(out for _, out in outs)
        acked = re.findall(r"^job (\d+): acked$", log, re.M)
        good = sorted(uid for uid, n in ids.items() if n not in failing)
        self.assertEqual(sorted(acked), good)
        released = re.findall(r"^job (\d+): failed, released after attempt 1$", log, re.M)
        last = re.findall(r"^job (\d+): failed, released after attempt 2$", log, re.M)
        bad = sorted(uid for uid, n in ids.items() if n in failing)
        self.assertEqual(sorted(released), bad)
        self.assertEqual(sorted(last), bad)
        self.assertNotIn("lost before the ack", log)

        # The server agrees: the release after the last attempt moved them to the dead letters.
        dead = self.wait_for("two dead letters", lambda: len(self.peek(q, "dead")) == 2 and
                             self.peek(q, "dead"))
        self.assertEqual(sorted(m["body"]["n"] for m in dead), sorted(failing))
        self.assertEqual([m["attempts"] for m in dead], [2, 2])
        stats = self.stats(q)
        self.assertEqual((stats["ready"], stats["claimed"], stats["delayed"], stats["dead"]),
                         (0, 0, 0, 2))
        self.assertEqual((stats["enqueued"], stats["claims"], stats["acks"]), (20, 22, 18))
        self.assertEqual(stats["dead_lettered"], 2)

    def test_worker_once_drains_and_sigterm_stops_an_idle_worker(self):
        q = "once"
        self.assertEqual(self.http("PUT", "/v1/queues/" + q)[0], 201)
        for n in range(3):
            self.assertEqual(self.http("POST", "/v1/queues/%s/messages" % q, {"n": n})[0], 201)
        status, out = self.finish(self.worker(q, "--once"))
        self.assertEqual(status, 0)
        self.assertEqual(len(re.findall(r"^job \d+: acked$", out, re.M)), 3)
        self.assertIn("handled 3 jobs", out)

        # Without --once an idle worker wakes for a new job and exits on SIGTERM.
        w = self.worker(q)
        time.sleep(0.5)
        status, reply = self.http("POST", "/v1/queues/%s/messages" % q, {"n": 9})
        self.assertEqual(status, 201)
        self.wait_for("the job to be acked", lambda: self.stats(q)["acks"] == 4)
        time.sleep(0.3)  # back in IDLE
        w.send_signal(signal.SIGTERM)
        status, out = self.finish(w)
        self.assertEqual(status, 0, out)
        self.assertIn('job %s: {"n": 9}' % reply["id"], out)
        self.assertIn("handled 1 job\n", out)
        self.assertEqual(self.stats(q)["ready"], 0)


if __name__ == "__main__":
    harness.main()
