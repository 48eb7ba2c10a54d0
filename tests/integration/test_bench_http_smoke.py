"""tests/bench/bench_http.c in a short run: one measured second per phase and one cycle round
per server. The benchmark checks every job of a cycle phase was enqueued, claimed and acked
exactly once and that the queues hold what the phases left, and exits non-zero on any
functional failure; this test keeps those checks in `make test`. Without beanstalkd the program
skips the peer and this test checks the imapqd figures only.
"""
import os
import re
import shutil
import subprocess
import unittest

import harness

# Seconds the short run may take before the test fails (it needs about 10 s, more under ASan).
PATIENCE = 180


def bench_path():
    """bench_http sits in the build folder's bench/ beside the imapqd it was built with."""
    return os.path.join(os.path.dirname(os.path.abspath(harness.IMAPQD)), "bench", "bench_http")


class BenchHttpSmokeTest(unittest.TestCase):

    def test_short_run_against_imapqd_and_beanstalkd(self):
        if not os.access(bench_path(), os.X_OK):
            print("skipping: %s is not built" % bench_path())
            self.skipTest("bench_http is not built")
        env = dict(os.environ, IMAPQ_IMAPQD=os.path.abspath(harness.IMAPQD),
                   IMAPQ_BENCH_HTTP_SECONDS="1", IMAPQ_BENCH_HTTP_ROUNDS="1",
                   IMAPQ_BENCH_HTTP_CLIENTS="16")
        proc = subprocess.run([bench_path()], capture_output=True, text=True,
                              timeout=PATIENCE, env=env)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        figures = dict(re.findall(r"^bench: (\S+) (\S+) \S+$", proc.stdout, re.M))
        for name in ("http.enqueue_per_s", "http.enqueue_batch100_per_s", "http.cycle_per_s",
                     "http.cycle_p50_ms", "http.cycle_p99_ms"):
            self.assertIn(name, figures, proc.stdout)
        # Work was done and counted: every phase completed units inside its window.
        self.assertGreater(float(figures["http.enqueue_per_s"]), 0)
        self.assertGreater(float(figures["http.enqueue_batch100_per_s"]), 0)
        self.assertGreater(float(figures["http.cycle_per_s"]), 0)
        self.assertIn("round 1", proc.stdout)
        if shutil.which("beanstalkd",
                        path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin"):
            self.assertIn("beanstalkd.cycle_per_s", figures, proc.stdout)
            self.assertIn("http.cycle_ratio_vs_beanstalkd", figures, proc.stdout)
            self.assertGreater(float(figures["beanstalkd.cycle_per_s"]), 0)
        self.assertNotIn("FAILED", proc.stderr)


if __name__ == "__main__":
    harness.main()
