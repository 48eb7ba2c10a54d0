"""Starts a real imapqd on ephemeral loopback ports with a temporary data folder.

Every integration test imports this module; the test runner passes the daemon's path as
`--imapqd PATH` (or the IMAPQD environment variable names it).
"""
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

IMAPQD = os.environ.get("IMAPQD", "")
# Seconds an ApiTestCase waits for a reply, a child process or a condition before it fails.
PATIENCE = 30.0


def take_daemon_argument():
    """Removes `--imapqd PATH` from sys.argv and remembers PATH."""
    global IMAPQD
    if "--imapqd" in sys.argv:
        i = sys.argv.index("--imapqd")
        IMAPQD = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    if not IMAPQD:
        sys.exit("usage: test_*.py --imapqd PATH/TO/imapqd")


class Daemon:
    """One imapqd process; start() waits until its port file appears."""

    def __init__(self, data_dir=None, extra_args=()):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="imapq-it-")
        self.port_file = os.path.join(self.data_dir, "ports")
        self.extra_args = list(extra_args)
        self.proc = None
        self.ports = {}
        self.stdout = ""
        self.stderr = ""

    def args(self):
        return [IMAPQD, "--data", os.path.join(self.data_dir, "data"),
                "--imap", "127.0.0.1:0", "--http", "127.0.0.1:0",
                "--port-file", self.port_file] + self.extra_args

    def start(self, timeout=20.0):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.out_path = os.path.join(self.data_dir, "stdout.log")
        self.err_path = os.path.join(self.data_dir, "stderr.log")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(self.args(), stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    self.ports = dict(line.strip().split("=", 1) for line in f if "=" in line)
                self.ports = {k: int(v) for k, v in self.ports.items()}
                return self
            if self.proc.poll() is not None:
                self._collect()
                raise RuntimeError("imapqd exited with %d:\n%s" % (self.proc.returncode,
                                                                   self.stderr))
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("imapqd did not become ready in %.0f s" % timeout)

    def _collect(self):
        with open(self.out_path) as f:
            self.stdout = f.read()
        with open(self.err_path) as f:
            self.stderr = f.read()

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Sends sig and returns the exit status."""
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait()
        self._collect()
        self.proc = None
        return status

    def credentials(self):
        """The demo account from the data folder: (user, password, token)."""
        with open(os.path.join(self.data_dir, "data", "credentials")) as f:
            kv = dict(line.strip().split("=", 1) for line in f if "=" in line)
        return kv["user"], kv["password"], kv["token"]

    def imaplib(self):
        """A logged-in imaplib client."""
        import imaplib
        m = imaplib.IMAP4("127.0.0.1", self.ports["imap"])
        user, password, _ = self.credentials()
        m.login(user, password)
        return m

    def raw(self, login=True):
        """A raw-socket client, logged in unless login is False."""
        from rawimap import RawImap
        c = RawImap(self.ports["imap"])
        if login:
            user, password, _ = self.credentials()
            c.login(user, password)
        return c

    def kill(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        if self.proc is not None:
            self.kill()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class DaemonTestCase(unittest.TestCase):
    """Test cases sharing one imapqd per class, which must exit with status 0 when they end."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon().start()

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        cls.daemon.cleanup()
        assert status == 0, "imapqd exited with %s:\n%s" % (status, cls.daemon.stderr)


class ApiTestCase(DaemonTestCase):
    """A DaemonTestCase that drives the daemon over its HTTP API with the demo token and waits
    for child processes (the examples) and for conditions."""

    def http(self, method, path, body=None, ctype="application/json", raw=None):
        """One API request: body is sent as JSON, raw as the bytes it is. Returns (status,
        parsed JSON or None)."""
        _, _, token = self.daemon.credentials()
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.daemon.ports["http"], path),
                                     data=data, method=method,
                                     headers={"Authorization": "Bearer " + token,
                                              "Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=PATIENCE) as resp:
                text = resp.read()
                return resp.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stats(self, queue):
        """The "stats" object of GET /v1/queues/QUEUE, which must answer 200."""
        status, reply = self.http("GET", "/v1/queues/" + queue)
        self.assertEqual(status, 200, reply)
        return reply["stats"]

    def finish(self, proc):
        """Waits for a child started with text pipes: (exit status, stdout, stderr); kills it
        and fails when it hangs."""
        try:
            out, err = proc.communicate(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self.fail("worker hung:\n%s\n%s" % (out, err))
        return proc.returncode, out, err

    def wait_for(self, what, check):
        """Polls check until it returns a true value, which it returns; fails after PATIENCE."""
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)


# PBKDF2 iterations of test users' hashes: the smallest the daemon accepts, so logins are quick.
USERS_ITERATIONS = 1000


def pbkdf2_hash(password):
    """A users-file password hash (PBKDF2-SHA256, USERS_ITERATIONS, random salt)."""
    salt = os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, USERS_ITERATIONS)
    return "$pbkdf2-sha256$i=%d$%s$%s" % (USERS_ITERATIONS, base64.b64encode(salt).decode(),
                                          base64.b64encode(key).decode())


def token_hash(token):
    """A users-file token hash."""
    return "$sha256$" + base64.b64encode(hashlib.sha256(token.encode()).digest()).decode()


def users_text(users):
    """A users file for users, a dict of name: (grants, password, token)."""
    lines = ["# test users"]
    for name, (grants, password, token) in users.items():
        lines.append("%s roles=%s password=%s tokens=%s" % (name, grants, pbkdf2_hash(password),
                                                            token_hash(token)))
    return "\n".join(lines) + "\n"


def write_users(path, users):
    """Writes users_text(users) to path, readable by its owner only (as the daemon demands)."""
    with open(path, "w") as f:
        f.write(users_text(users))
    os.chmod(path, 0o600)


def run_imapqd(args, timeout=30):
    """Runs imapqd to completion with args (for --help and usage errors)."""
    return subprocess.run([IMAPQD] + list(args), capture_output=True, text=True, timeout=timeout)


def main():
    import warnings
    take_daemon_argument()
    # Tests close what they open; socket warnings from failed assertions only add noise.
    warnings.simplefilter("ignore", ResourceWarning)
    unittest.main(verbosity=2)
