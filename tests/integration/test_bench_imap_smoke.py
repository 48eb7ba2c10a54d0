"""tests/bench/bench_imap.c in its smoke mode: the benchmark's own Dovecot harness, the IMAP
client library and Dovecot must agree, and the same claim cycle must pass the exactly-once
checks on imapqd. `bench_imap --smoke` runs every phase with 600 jobs and 1 s windows (about
10 s); it exits non-zero on any functional failure. Without Dovecot the test says so and passes.
"""
import os
import re
import shutil
import subprocess
import unittest

import harness

# Seconds the smoke run may take before the test fails (it needs about 10 s, more under ASan).
PATIENCE = 120


def bench_path():
    """bench_imap sits in the build folder's bench/ beside the imapqd it was built with."""
    return os.path.join(os.path.dirname(os.path.abspath(harness.IMAPQD)), "bench", "bench_imap")


def dovecot_path():
    """Dovecot as bench_imap finds it: $IMAPQ_DOVECOT, else dovecot on PATH or in sbin."""
    named = os.environ.get("IMAPQ_DOVECOT")
    if named:
        return named if os.access(named, os.X_OK) else None
    return shutil.which("dovecot",
                        path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin")


class BenchImapSmokeTest(unittest.TestCase):

    def test_smoke_against_imapqd_and_dovecot(self):
        if not dovecot_path():
            print("skipping: dovecot is not installed (make bench-deps installs dovecot-imapd)")
            self.skipTest("dovecot is not installed")
        if not os.access(bench_path(), os.X_OK):
            print("skipping: %s is not built" % bench_path())
            self.skipTest("bench_imap is not built")
        env = dict(os.environ, IMAPQ_IMAPQD=os.path.abspath(harness.IMAPQD))
        proc = subprocess.run([bench_path(), "--smoke"], capture_output=True, text=True,
                              timeout=PATIENCE, env=env)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        figures = dict(re.findall(r"^bench: (\S+) (\S+) \S+$", proc.stdout, re.M))
        for server in ("imapqd", "dovecot"):
            for workers in (1, 8, 64):
                self.assertIn("imap.%s_claims_per_s_w%d" % (server, workers), figures,
                              proc.stdout)
                self.assertIn("imap.%s_conflicts_w%d" % (server, workers), figures)
        for name in ("imap.claim_ratio_vs_dovecot_w8", "imap.dovecot_double_claims",
                     "imap.dovecot_stranded_jobs",
                     "imap.claim_p50_ms_1k", "imap.claim_p99_ms_1k",
                     "imap.claim_p50_ms_10k", "imap.claim_p99_ms_10k",
                     "imap.claim_p50_ratio_10k_1k"):
            self.assertIn(name, figures, proc.stdout)
        # A single worker never races anyone, on either server.
        self.assertEqual(figures["imap.imapqd_conflicts_w1"], "0")
        self.assertEqual(figures["imap.dovecot_conflicts_w1"], "0")
        # Every phase preloads 600 jobs, and its workers ack some (all unless the window ends
        # first) on both servers; the program itself checks that each was acked at most once.
        for server in ("imapqd", "dovecot"):
            rows = re.findall(r"^  %s, \d+ workers?\s.* (\d+) of (\d+) jobs acked$"
                              % server, proc.stdout, re.M)
            self.assertEqual(len(rows), 3, proc.stdout)
            for acked, jobs in rows:
                self.assertEqual(jobs, "600")
                self.assertGreater(int(acked), 0)
        self.assertNotIn("FAILED", proc.stderr)


if __name__ == "__main__":
    harness.main()
