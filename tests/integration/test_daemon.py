"""The daemon's lifecycle: command line, first start, credentials, readiness, clean shutdown."""
import os
import signal
import stat
import tempfile
import unittest

import harness


class CommandLine(unittest.TestCase):
    def test_help_exits_zero_and_names_every_option(self):
        r = harness.run_imapqd(["--help"])
        self.assertEqual(r.returncode, 0)
        for opt in ["--data", "--imap", "--imaps", "--http", "--users", "--tls-cert",
                    "--tls-key", "--fsync", "--max-queue-messages", "--port-file", "--config"]:
            self.assertIn(opt, r.stdout)

    def test_unknown_option_is_a_usage_error(self):
        r = harness.run_imapqd(["--no-such-option"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option", r.stderr)

    def test_bad_values_are_usage_errors(self):
        for args in (["--fsync", "sometimes"], ["--imap", "127.0.0.1:99999"],
                     ["--http", "nocolon"], ["--imaps", "127.0.0.1:0"],
                     ["--tls-cert", "/x.pem"], ["extra-argument"], ["--data"],
                     ["--max-queue-messages", "0"], ["--max-queue-messages", "4294967295"],
                     ["--max-queue-messages", "12x"]):
            r = harness.run_imapqd(args)
            self.assertEqual(r.returncode, 2, args)

    def test_config_file_is_read_and_checked(self):
        with tempfile.TemporaryDirectory() as d:
            conf = os.path.join(d, "imapqd.conf")
            with open(conf, "w") as f:
                f.write("# comment\nfsync = sometimes\n")
            r = harness.run_imapqd(["--config", conf])
            self.assertEqual(r.returncode, 2)
            self.assertIn("fsync", r.stderr)
            with open(conf, "w") as f:
                f.write("bogus = 1\n")
            r = harness.run_imapqd(["--config", conf])
            self.assertEqual(r.returncode, 2)
            self.assertIn("unknown option", r.stderr)


class Lifecycle(unittest.TestCase):
    def setUp(self):
        self.daemon = harness.Daemon()
        self.addCleanup(self.daemon.cleanup)

    def credentials(self):
        path = os.path.join(self.daemon.data_dir, "data", "credentials")
        with open(path) as f:
            lines = dict(line.strip().split("=", 1) for line in f if "=" in line)
        return path, lines

    def test_first_start_creates_and_prints_the_demo_account(self):
        self.daemon.start()
        self.assertEqual(self.daemon.stop(), 0)
        path, creds = self.credentials()
        self.assertEqual(creds["user"], "demo")
        self.assertGreaterEqual(len(creds["password"]), 16)
        self.assertGreaterEqual(len(creds["token"]), 32)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertIn("password=" + creds["password"], self.daemon.stdout)
        self.assertIn("token=" + creds["token"], self.daemon.stdout)

    def test_restart_keeps_the_account_and_does_not_print_it(self):
        self.daemon.start()
        self.daemon.stop()
        _, first = self.credentials()
        self.daemon.start()
        self.assertEqual(self.daemon.stop(), 0)
        _, second = self.credentials()
        self.assertEqual(first, second)
        self.assertNotIn(first["password"], self.daemon.stdout)

    def test_sigterm_and_sigint_shut_down_cleanly(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.daemon.start()
            self.assertTrue(os.path.exists(self.daemon.port_file))
            self.assertEqual(self.daemon.stop(sig), 0)
            self.assertFalse(os.path.exists(self.daemon.port_file))
            self.assertIn("stopped", self.daemon.stderr)

    def test_sighup_does_not_stop_the_daemon(self):
        self.daemon.start()
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.assertIsNone(self.daemon.proc.poll())
        self.assertEqual(self.daemon.stop(), 0)

    def test_second_daemon_on_the_same_data_is_refused(self):
        self.daemon.start()
        other = harness.Daemon(data_dir=self.daemon.data_dir)
        other.port_file = os.path.join(self.daemon.data_dir, "ports2")
        with self.assertRaises(RuntimeError) as ctx:
            other.start()
        self.assertIn("in use", str(ctx.exception))
        self.assertEqual(self.daemon.stop(), 0)

    def test_recovers_after_sigkill(self):
        self.daemon.start()
        self.daemon.kill()
        self.daemon.start()
        self.assertIn("store open", self.daemon.proc and open(self.daemon.err_path).read())
        self.assertEqual(self.daemon.stop(), 0)

    def test_unreadable_users_file_is_refused(self):
        self.daemon.extra_args = ["--users", "/nonexistent/users"]
        with self.assertRaises(RuntimeError):
            self.daemon.start()


if __name__ == "__main__":
    harness.main()
