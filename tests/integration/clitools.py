"""Running the imapq command line against the harness's imapqd: the helpers test_cli.py and
test_cli_work.py share."""
import json
import os
import subprocess
import tempfile

import harness


def imapq_path():
    """build/imapq sits next to the imapqd the harness was given."""
    return os.path.join(os.path.dirname(os.path.abspath(harness.IMAPQD)), "imapq")


class ImapqTestCase(harness.DaemonTestCase):
    """Runs imapq against the class's daemon with its URL and token; queue() makes fresh queues
    named PREFIX1, PREFIX2, ..."""
    counter = 0
    prefix = "q"
    # Seconds any single imapq run may take before the test fails.
    patience = 30.0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.url = "http://127.0.0.1:%d" % cls.daemon.ports["http"]
        cls.token = cls.daemon.credentials()[2]
        cls.data = os.path.join(cls.daemon.data_dir, "data")

    def imapq(self, *args, stdin=None, auth=True, env=None):
        """Runs imapq (with the daemon's URL and token unless auth is False) in a folder without
        credentials and with IMAPQ_URL and IMAPQ_TOKEN unset unless env sets them:
        (exit status, stdout, stderr)."""
        cmd = [imapq_path()]
        if auth:
            cmd += ["--url", self.url, "--token", self.token]
        full_env = dict(os.environ)
        for name in ("IMAPQ_URL", "IMAPQ_TOKEN"):
            full_env.pop(name, None)
        full_env.update(env or {})
        p = subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True,
                           timeout=self.patience, env=full_env, cwd=tempfile.gettempdir())
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args, **kw):
        """Runs imapq, which must exit 0: its stdout."""
        rc, out, err = self.imapq(*args, **kw)
        self.assertEqual(rc, 0, "imapq %s: %s%s" % (" ".join(args), out, err))
        return out

    def fails(self, status, *args, **kw):
        """Runs imapq, which must exit with status: (stdout, stderr)."""
        rc, out, err = self.imapq(*args, **kw)
        self.assertEqual(rc, status, "imapq %s: %s%s" % (" ".join(args), out, err))
        return out, err

    def queue(self, *settings):
        """Creates a fresh queue with the given `imapq create` options: its name."""
        type(self).counter += 1
        name = "%s%d" % (self.prefix, type(self).counter)
        self.ok("create", name, *settings)
        return name

    def stats(self, queue):
        """The queue's "stats" object, read with `imapq --json stats`."""
        return json.loads(self.ok("--json", "stats", queue))["stats"]
