"""`imapq work` end to end against a real imapqd: acks on success, releases with backoff and dead
letters on failure, commands killed by a signal, lease extensions for long jobs, drains on
SIGTERM (and a second signal), and --concurrency 4 draining 50 jobs each exactly once."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import clitools
import harness
from clitools import imapq_path

# Seconds a test waits for the worker or the daemon before it fails.
PATIENCE = 60.0


class WorkTest(clitools.ImapqTestCase):
    prefix = "work"
    patience = PATIENCE

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="imapq-work-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def script(self, text):
        """A /bin/sh command in the test's folder; $DIR names that folder."""
        path = os.path.join(self.dir, "job%d.sh" % len(os.listdir(self.dir)))
        with open(path, "w") as f:
            f.write("#!/bin/sh\nDIR=%s\n%s\n" % (self.dir, text))
        os.chmod(path, 0o755)
        return path

    def worker(self, queue, *args):
        """Starts imapq work; stderr goes to a file read by log()."""
        err = open(os.path.join(self.dir, "worker%d.log" % time.monotonic_ns()), "w+")
        self.addCleanup(err.close)
        p = subprocess.Popen([imapq_path(), "--url", self.url, "--token", self.token, "work",
                              "--queue", queue] + list(args), stdout=subprocess.DEVNULL,
                             stderr=err)
        p.log_file = err
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p

    @staticmethod
    def log(p):
        with open(p.log_file.name) as f:
            return f.read()

    def wait_for(self, what, check, worker=None):
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        self.fail("timed out waiting for %s%s" % (what, "\n" + self.log(worker) if worker
                                                  else ""))

    def stop(self, p, sig=signal.SIGTERM):
        p.send_signal(sig)
        try:
            return p.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            p.kill()
            self.fail("worker did not exit after %s:\n%s" % (sig, self.log(p)))

    def lines(self, name):
        path = os.path.join(self.dir, name)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return f.read().splitlines()

    def test_success_acks_with_body_and_environment(self):
        q = self.queue()
        self.ok("enqueue", q, '{"big": 12345678901234567890}')
        self.ok("enqueue", q, "--content-type", "text/plain", "hello")
        cmd = self.script('cat > "$DIR/body.$IMAPQ_JOB_ID"\n'
                          'env | grep ^IMAPQ_ | sort > "$DIR/env.$IMAPQ_JOB_ID"\n'
                          'echo "$@" > "$DIR/args.$IMAPQ_JOB_ID"')
        w = self.worker(q, "--", cmd, "one arg", "two")
        self.wait_for("two acks", lambda: self.stats(q)["acks"] == 2, w)
        self.assertEqual(self.stop(w), 0, self.log(w))
        with open(os.path.join(self.dir, "body.1")) as f:
            self.assertEqual(f.read(), '{"big": 12345678901234567890}')
        with open(os.path.join(self.dir, "body.2")) as f:
            self.assertEqual(f.read(), "hello")
        env = dict(l.split("=", 1) for l in self.lines("env.2"))
        self.assertEqual(env["IMAPQ_QUEUE"], q)
        self.assertEqual(env["IMAPQ_JOB_ID"], "2")
        self.assertEqual(env["IMAPQ_ATTEMPTS"], "1")
        self.assertEqual(env["IMAPQ_MAX_ATTEMPTS"], "5")
        self.assertEqual(env["IMAPQ_CONTENT_TYPE"], "text/plain")
        self.assertRegex(env["IMAPQ_RECEIPT"], r"^\d+-\d+$")
        self.assertRegex(env["IMAPQ_ENQUEUED_AT"], r"^\d{4}-\d\d-\d\dT")
        self.assertEqual(self.lines("args.1"), ["one arg two"])
        stats = self.stats(q)
        self.assertEqual((stats["ready"], stats["claimed"], stats["nacks"]), (0, 0, 0))
        log = self.log(w)
        self.assertRegex(log, r"job 1 claimed \(attempt 1\)")
        self.assertRegex(log, r"job 1 done: exit 0 after \d+\.\d s")
        self.assertIn("job 2 acked", log)

    def test_failure_retries_with_backoff_then_dead_letters(self):
        q = self.queue("--max-attempts", "3")
        self.ok("enqueue", q, "always fails")
        self.ok("enqueue", q, "fails once")
        cmd = self.script('body=$(cat)\n'
                          'echo "$IMAPQ_JOB_ID $IMAPQ_ATTEMPTS $(date +%s.%N)" >> "$DIR/runs"\n'
                          '[ "$body" = "fails once" ] && [ "$IMAPQ_ATTEMPTS" -ge 2 ] && exit 0\n'
                          'exit 7')
        w = self.worker(q, "--backoff", "1", "--max-backoff", "1", "--", cmd)
        self.wait_for("a dead letter and an ack",
                      lambda: self.stats(q)["dead"] == 1 and self.stats(q)["acks"] == 1, w)
        self.assertEqual(self.stop(w), 0, self.log(w))
        runs = [l.split() for l in self.lines("runs")]
        self.assertEqual(sorted((r[0], r[1]) for r in runs),
                         [("1", "1"), ("1", "2"), ("1", "3"), ("2", "1"), ("2", "2")])
        # Each retry came after its backoff delay.
        times = [float(r[2]) for r in runs if r[0] == "1"]
        self.assertGreaterEqual(times[1] - times[0], 0.9)
        dead = json.loads(self.ok("--json", "dead", "list", q))["messages"]
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["attempts"], 3)
        log = self.log(w)
        self.assertIn("job 1 failed: exit 7", log)
        self.assertIn("retry in 1 s", log)
        self.assertIn("attempt 3 of 3, so it goes to the dead letters", log)
        self.assertEqual(self.stats(q)["nacks"], 4)  # three for job 1, one for job 2

    def test_command_killed_by_signal_is_a_failure(self):
        q = self.queue("--max-attempts", "2")
        self.ok("enqueue", q, "crash")
        cmd = self.script('echo run >> "$DIR/runs"\nkill -KILL $$')
        w = self.worker(q, "--backoff", "0", "--", cmd)
        self.wait_for("a dead letter", lambda: self.stats(q)["dead"] == 1, w)
        self.assertEqual(self.stop(w), 0, self.log(w))
        self.assertEqual(len(self.lines("runs")), 2)
        self.assertIn("failed: killed by signal 9", self.log(w))
        stats = self.stats(q)
        self.assertEqual((stats["acks"], stats["nacks"], stats["claims"]), (0, 2, 2))

    def test_lease_is_extended_for_a_long_job(self):
        q = self.queue("--lease", "2")
        self.ok("enqueue", q, "slow")
        cmd = self.script('echo "$IMAPQ_JOB_ID" >> "$DIR/runs"\nsleep 5')
        w = self.worker(q, "--", cmd)
        # A second worker would get the job the moment its lease lapsed.
        other = self.worker(q, "--", cmd)
        self.wait_for("the ack", lambda: self.stats(q)["acks"] == 1, w)
        time.sleep(2.5)  # longer than a lease: a lost job would have come back by now
        self.assertEqual(self.stop(w), 0, self.log(w))
        self.assertEqual(self.stop(other), 0, self.log(other))
        self.assertEqual(self.lines("runs"), ["1"])
        stats = self.stats(q)
        self.assertEqual((stats["claims"], stats["acks"], stats["expired"], stats["nacks"]),
                         (1, 1, 0, 0))
        log = self.log(w) + self.log(other)
        self.assertGreaterEqual(log.count("job 1 lease extended"), 2)
        self.assertNotIn("lost", log)

    def test_sigterm_drains_running_jobs(self):
        q = self.queue()
        self.ok("enqueue", q, "--lines", stdin="a\nb\nc\n")
        cmd = self.script('echo "start $IMAPQ_JOB_ID" >> "$DIR/runs"\nsleep 2\n'
                          'echo "end $IMAPQ_JOB_ID" >> "$DIR/runs"')
        w = self.worker(q, "--concurrency", "2", "--", cmd)
        self.wait_for("two running jobs", lambda: len(self.lines("runs")) == 2, w)
        started = time.monotonic()
        self.assertEqual(self.stop(w), 0, self.log(w))
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(sorted(self.lines("runs")), ["end 1", "end 2", "start 1", "start 2"])
        stats = self.stats(q)
        self.assertEqual((stats["acks"], stats["ready"], stats["claimed"], stats["claims"]),
                         (2, 1, 0, 2))
        self.assertIn("draining, 2 running job(s) to finish", self.log(w))

    def test_second_signal_kills_and_releases(self):
        q = self.queue()
        self.ok("enqueue", q, "long")
        cmd = self.script('echo "$$" >> "$DIR/runs"\nsleep 30')
        w = self.worker(q, "--", cmd)
        self.wait_for("the job to start", lambda: len(self.lines("runs")) == 1, w)
        w.send_signal(signal.SIGINT)
        time.sleep(0.3)
        self.assertIsNone(w.poll(), "the worker left after one signal:\n" + self.log(w))
        started = time.monotonic()
        self.assertEqual(self.stop(w, signal.SIGINT), 1, self.log(w))
        self.assertLess(time.monotonic() - started, 10)
        pid = int(self.lines("runs")[0])
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
        stats = self.stats(q)
        self.assertEqual((stats["ready"], stats["claimed"], stats["nacks"]), (1, 0, 1))
        self.assertIn("killing 1 running job(s)", self.log(w))

    def test_concurrency_four_drains_fifty_jobs_exactly_once(self):
        q = self.queue()
        self.ok("enqueue", q, "--lines", stdin="".join("job %d\n" % i for i in range(50)))
        cmd = self.script('body=$(cat)\necho "$IMAPQ_JOB_ID $body" >> "$DIR/runs"\n'
                          'touch "$DIR/running.$IMAPQ_JOB_ID"\n'
                          'ls "$DIR" | grep -c "^running\\." >> "$DIR/concurrent"\n'
                          'sleep 0.2\nrm "$DIR/running.$IMAPQ_JOB_ID"')
        w = self.worker(q, "--concurrency", "4", "--", cmd)
        self.wait_for("50 acks", lambda: self.stats(q)["acks"] == 50, w)
        self.assertEqual(self.stop(w), 0, self.log(w))
        runs = self.lines("runs")
        self.assertEqual(len(runs), 50)
        self.assertEqual(sorted(int(r.split()[0]) for r in runs), list(range(1, 51)))
        self.assertEqual(sorted(r.split(" ", 1)[1] for r in runs),
                         sorted("job %d" % i for i in range(50)))
        concurrent = [int(n) for n in self.lines("concurrent")]
        self.assertLessEqual(max(concurrent), 4)
        self.assertGreater(max(concurrent), 1)
        stats = self.stats(q)
        self.assertEqual((stats["claims"], stats["nacks"], stats["expired"]), (50, 0, 0))

    def test_missing_command_releases_the_job_and_fails(self):
        q = self.queue()
        self.ok("enqueue", q, "x")
        w = self.worker(q, "--", os.path.join(self.dir, "no-such-command"))
        self.assertEqual(w.wait(PATIENCE), 1, self.log(w))
        self.assertIn("cannot run", self.log(w))
        stats = self.stats(q)
        self.assertEqual((stats["ready"], stats["claimed"], stats["dead"]), (1, 0, 0))

    def test_missing_queue(self):
        w = self.worker("no-such-queue", "--", "true")
        self.assertEqual(w.wait(PATIENCE), 3)
        self.assertIn("HTTP 404 not_found", self.log(w))


if __name__ == "__main__":
    harness.main()
