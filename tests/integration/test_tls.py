"""TLS: IMAP STARTTLS and implicit TLS, the TLS 1.2 floor, certificate reloads on SIGHUP, HTTPS,
stalled handshakes, and plaintext logins refused on cleartext non-loopback connections."""
import imaplib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import warnings

import harness

HANDSHAKE_TIMEOUT_S = 10  # IMAPQ_TLS_HANDSHAKE_TIMEOUT_S


def make_pair(folder, name):
    """Makes a self-signed P-256 certificate for localhost and 127.0.0.1; returns (cert, key)."""
    cert = os.path.join(folder, name + "-cert.pem")
    key = os.path.join(folder, name + "-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def der_of(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def verifying_context(cert_path):
    ctx = ssl.create_default_context(cafile=cert_path)
    ctx.check_hostname = False  # the tests connect to 127.0.0.1, which the SAN names anyway
    return ctx


def any_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def quietly(fn):
    """Runs a cleanup that may find its connection closed already."""
    try:
        fn()
    except OSError:
        pass


def non_loopback_address():
    """An IPv4 address of this machine outside 127/8, or None."""
    for probe in ("10.255.255.255", "192.0.2.1", "198.51.100.1"):
        # Connecting a UDP socket sends nothing; it only picks the source address.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((probe, 9))
            except OSError:
                continue
            addr = s.getsockname()[0]
            if not addr.startswith("127.") and addr != "0.0.0.0":
                return addr
    return None


class Lines:
    """Line-oriented IMAP over a plain or TLS socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self, timeout=5.0):
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def until_tagged(self, tag):
        """Lines up to and including the tagged reply of tag."""
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1].startswith(tag + " "):
                return lines

    def starttls(self, ctx):
        self.sock.settimeout(10)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")


class TlsDaemon(harness.DaemonTestCase):
    """One daemon with STARTTLS, an implicit-TLS listener and HTTPS."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="imapq-tls-")
        cls.cert, cls.key = make_pair(cls.tmp, "a")
        cls.daemon = harness.Daemon(extra_args=["--imaps", "127.0.0.1:0", "--tls-cert",
                                                cls.cert, "--tls-key", cls.key]).start()
        cls.user, cls.password, cls.token = cls.daemon.credentials()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def plain(self):
        c = Lines(socket.create_connection(("127.0.0.1", self.daemon.ports["imap"])))
        self.addCleanup(lambda: c.sock.close())
        return c

    def test_port_file_names_the_tls_listener(self):
        self.assertIn("imaps", self.daemon.ports)
        self.assertNotEqual(self.daemon.ports["imaps"], self.daemon.ports["imap"])

    def test_starttls_is_advertised_on_cleartext_only(self):
        c = self.plain()
        greeting = c.line()
        self.assertIn(" STARTTLS", greeting)
        c.send(b"a STARTTLS\r\n")
        self.assertEqual(c.line(), "a OK Begin TLS negotiation now")
        c.starttls(verifying_context(self.cert))
        # The capabilities are announced afresh, without STARTTLS.
        caps = c.line()
        self.assertTrue(caps.startswith("* CAPABILITY "), caps)
        self.assertNotIn("STARTTLS", caps)
        self.assertIn("AUTH=PLAIN", caps)
        c.send(b"b CAPABILITY\r\n")
        lines = c.until_tagged("b")
        self.assertNotIn("STARTTLS", lines[0])
        self.assertEqual(lines[-1], "b OK CAPABILITY completed")
        c.send(b"c STARTTLS\r\n")
        self.assertEqual(c.line(), "c NO [CLIENTBUG] TLS is already active")

    def test_starttls_then_login_and_claim(self):
        m = imaplib.IMAP4("127.0.0.1", self.daemon.ports["imap"])
        self.addCleanup(quietly, m.shutdown)
        self.assertIn("STARTTLS", m.capabilities)
        typ, _ = m.starttls(ssl_context=verifying_context(self.cert))
        self.assertEqual(typ, "OK")
        self.assertIn(m.sock.version(), ("TLSv1.2", "TLSv1.3"))
        self.assertNotIn("STARTTLS", m.capabilities)
        self.assertEqual(m.login(self.user, self.password)[0], "OK")
        m.create("tls-jobs")
        self.assertEqual(m.append("tls-jobs", None, None, b"Subject: j\r\n\r\nwork")[0], "OK")
        m.enable("CONDSTORE")
        m.select("tls-jobs")
        typ, data = m.uid("SEARCH", "UNKEYWORD", "$Claimed", "UNDELETED")
        uid = data[0].split()[0].decode()
        typ, data = m.uid("FETCH", uid, "(FLAGS MODSEQ)")
        modseq = re.search(rb"MODSEQ \((\d+)\)", data[0]).group(1).decode()
        typ, data = m.uid("STORE", uid, "(UNCHANGEDSINCE %s) +FLAGS.SILENT ($Claimed)" % modseq)
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0], rb"UID %s MODSEQ \(\d+\)" % uid.encode())
        # The same claim again loses.
        typ, data = m.uid("STORE", uid, "(UNCHANGEDSINCE %s) +FLAGS.SILENT ($Claimed)" % modseq)
        self.assertEqual(m.response("MODIFIED")[1], [uid.encode()])
        m.logout()

    def test_commands_pipelined_after_starttls_are_dropped(self):
        c = self.plain()
        c.line()
        c.send(b"a STARTTLS\r\nb NOOP\r\n")
        self.assertEqual(c.line(), "a OK Begin TLS negotiation now")
        # Nothing else arrives in cleartext before the handshake.
        c.sock.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            c.sock.recv(1)
        self.assertEqual(c.buf, b"")
        c.starttls(verifying_context(self.cert))
        c.send(b"c NOOP\r\n")
        lines = c.until_tagged("c")
        self.assertEqual(lines[-1], "c OK NOOP completed")
        self.assertFalse([line for line in lines if line.startswith("b ")], lines)

    def test_implicit_tls(self):
        m = imaplib.IMAP4_SSL("127.0.0.1", self.daemon.ports["imaps"],
                              ssl_context=verifying_context(self.cert))
        self.addCleanup(quietly, m.shutdown)
        self.assertIn(m.sock.version(), ("TLSv1.2", "TLSv1.3"))
        self.assertNotIn("STARTTLS", m.capabilities)
        self.assertIn("AUTH=PLAIN", m.capabilities)
        self.assertEqual(m.login(self.user, self.password)[0], "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        m.logout()

    def test_tls_1_2_works_and_1_1_is_refused(self):
        ctx = verifying_context(self.cert)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        m = imaplib.IMAP4_SSL("127.0.0.1", self.daemon.ports["imaps"], ssl_context=ctx)
        self.assertEqual(m.sock.version(), "TLSv1.2")
        m.logout()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old = any_context()
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        # Lower the client's own security level so that only the server can refuse.
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        with socket.create_connection(("127.0.0.1", self.daemon.ports["imaps"])) as s:
            with self.assertRaises(ssl.SSLError) as ctx_err:
                old.wrap_socket(s)
        self.assertIn("PROTOCOL_VERSION", str(ctx_err.exception).upper())
        r = subprocess.run(["openssl", "s_client", "-connect",
                            "127.0.0.1:%d" % self.daemon.ports["imaps"], "-tls1_1",
                            "-cipher", "DEFAULT:@SECLEVEL=0"],
                           input=b"", capture_output=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"alert protocol version", r.stdout + r.stderr)

    def test_openssl_s_client_starttls_and_login(self):
        script = "a LOGIN %s %s\nb LOGOUT\n" % (self.user, self.password)
        r = subprocess.run(["openssl", "s_client", "-quiet", "-crlf", "-starttls", "imap",
                            "-connect", "127.0.0.1:%d" % self.daemon.ports["imap"],
                            "-CAfile", self.cert, "-verify_return_error"],
                           input=script.encode(), capture_output=True, timeout=20)
        out = r.stdout.decode()
        self.assertIn("a OK Logged in", out)
        self.assertIn("b OK LOGOUT completed", out)

    def test_stalled_handshakes_do_not_block_others(self):
        # One peer connects to the TLS port and says nothing; another stops after STARTTLS.
        silent = socket.create_connection(("127.0.0.1", self.daemon.ports["imaps"]))
        self.addCleanup(silent.close)
        halfway = self.plain()
        halfway.line()
        halfway.send(b"a STARTTLS\r\n")
        self.assertEqual(halfway.line(), "a OK Begin TLS negotiation now")
        partial = socket.create_connection(("127.0.0.1", self.daemon.ports["imaps"]))
        self.addCleanup(partial.close)
        partial.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello
        started = time.monotonic()
        m = imaplib.IMAP4_SSL("127.0.0.1", self.daemon.ports["imaps"],
                              ssl_context=verifying_context(self.cert), timeout=5)
        self.assertEqual(m.login(self.user, self.password)[0], "OK")
        m.logout()
        self.assertLess(time.monotonic() - started, 3)
        # The stalled ones are cut after the handshake timeout.
        for s in (silent, halfway.sock, partial):
            s.settimeout(HANDSHAKE_TIMEOUT_S + 5)
            self.assertEqual(s.recv(100), b"")
        self.assertGreaterEqual(time.monotonic() - started, HANDSHAKE_TIMEOUT_S - 1)

    def test_failed_handshake_is_logged_and_harmless(self):
        with socket.create_connection(("127.0.0.1", self.daemon.ports["imaps"])) as s:
            s.sendall(b"a LOGIN not tls\r\n")
            s.settimeout(5)
            try:
                while s.recv(100):
                    pass
            except ConnectionResetError:
                pass
        m = imaplib.IMAP4_SSL("127.0.0.1", self.daemon.ports["imaps"],
                              ssl_context=verifying_context(self.cert))
        self.assertEqual(m.noop()[0], "OK")
        m.logout()
        with open(self.daemon.err_path) as f:
            self.assertIn("TLS handshake failed", f.read())

    def curl(self, *args):
        r = subprocess.run(["curl", "-sS", "--cacert", self.cert, "-H",
                            "Authorization: Bearer " + self.token] + list(args),
                           capture_output=True, text=True, timeout=30)
        return r

    def test_https(self):
        base = "https://localhost:%d" % self.daemon.ports["http"]
        r = self.curl(base + "/healthz")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), '{"status":"ok"}')
        r = self.curl("-X", "PUT", base + "/v1/queues/tls-https")
        self.assertIn('"name":"tls-https"', r.stdout)
        r = self.curl("-X", "POST", base + "/v1/queues/tls-https/messages",
                      "-H", "Content-Type: text/plain", "--data-binary", "job")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"id":"1"', r.stdout)
        r = self.curl("-X", "POST", base + "/v1/queues/tls-https/claims", "-d",
                      '{"max": 1}')
        self.assertIn('"receipt"', r.stdout)
        # A long poll parks (suspends) the connection and is resumed over TLS.
        started = time.monotonic()
        r = self.curl("-X", "POST", base + "/v1/queues/tls-https/claims", "-d",
                      '{"max": 1, "wait": 1}')
        self.assertEqual(r.stdout.strip(), '{"messages":[]}')
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        # Cleartext HTTP on the same port gets no answer, and TLS 1.1 is refused.
        r = subprocess.run(["curl", "-sS", "--max-time", "5",
                            "http://127.0.0.1:%d/healthz" % self.daemon.ports["http"]],
                           capture_output=True, text=True)
        self.assertNotIn('"status"', r.stdout)
        r = subprocess.run(["openssl", "s_client", "-connect",
                            "127.0.0.1:%d" % self.daemon.ports["http"], "-tls1_1",
                            "-cipher", "DEFAULT:@SECLEVEL=0"],
                           input=b"", capture_output=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)


class Reload(unittest.TestCase):
    """SIGHUP loads the certificate files again; bad files keep the previous pair."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="imapq-tls-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.cert = os.path.join(self.tmp, "cert.pem")
        self.key = os.path.join(self.tmp, "key.pem")
        self.a = make_pair(self.tmp, "a")
        self.b = make_pair(self.tmp, "b")
        self.install(self.a)
        self.daemon = harness.Daemon(extra_args=["--imaps", "127.0.0.1:0", "--tls-cert",
                                                 self.cert, "--tls-key", self.key])
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    def install(self, pair):
        shutil.copyfile(pair[0], self.cert)
        shutil.copyfile(pair[1], self.key)

    def served(self, port_name="imaps"):
        """The DER certificate a new connection gets."""
        port = self.daemon.ports[port_name]
        with socket.create_connection(("127.0.0.1", port)) as s:
            if port_name == "imap":
                s.recv(4096)
                s.sendall(b"a STARTTLS\r\n")
                s.recv(4096)
            with any_context().wrap_socket(s) as t:
                return t.getpeercert(binary_form=True)

    def log_count(self, text):
        with open(self.daemon.err_path) as f:
            return f.read().count(text)

    def hup_and_wait(self, log_text):
        before = self.log_count(log_text)
        self.daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.log_count(log_text) == before:
            self.assertLess(time.monotonic(), deadline, "no '%s' in the log" % log_text)
            time.sleep(0.05)

    def test_reload_serves_the_new_pair_and_keeps_it_over_bad_files(self):
        self.assertEqual(self.served(), der_of(self.a[0]))
        live = imaplib.IMAP4_SSL("127.0.0.1", self.daemon.ports["imaps"],
                                 ssl_context=any_context())
        self.addCleanup(quietly, live.shutdown)
        self.install(self.b)
        self.hup_and_wait("for new connections")
        self.assertEqual(self.served(), der_of(self.b[0]))
        self.assertEqual(self.served("imap"), der_of(self.b[0]))
        # A connection made before the reload goes on.
        self.assertEqual(live.noop()[0], "OK")
        self.assertEqual(live.sock.getpeercert(binary_form=True), der_of(self.a[0]))

        # Garbage, then a key that belongs to another certificate: both are refused.
        with open(self.cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        self.hup_and_wait("keeping the previous certificate")
        shutil.copyfile(self.b[0], self.cert)
        shutil.copyfile(self.a[1], self.key)
        self.hup_and_wait("keeping the previous certificate")
        with open(self.daemon.err_path) as f:
            self.assertIn("mismatch", f.read())
        os.unlink(self.key)
        self.hup_and_wait("keeping the previous certificate")
        self.assertIsNone(self.daemon.proc.poll())
        self.assertEqual(self.served(), der_of(self.b[0]))
        self.assertEqual(live.noop()[0], "OK")
        live.logout()
        self.assertEqual(self.daemon.stop(), 0)


class Startup(unittest.TestCase):
    def test_unusable_files_stop_the_start_with_a_message(self):
        with tempfile.TemporaryDirectory() as d:
            cert, key = make_pair(d, "a")
            _, other_key = make_pair(d, "b")
            for c, k, why in ((os.path.join(d, "none.pem"), key, "none.pem"),
                              (cert, other_key, "mismatch")):
                r = harness.run_imapqd(["--data", os.path.join(d, "data"), "--imap",
                                        "127.0.0.1:0", "--http", "127.0.0.1:0",
                                        "--tls-cert", c, "--tls-key", k])
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(why, r.stderr)


@unittest.skipIf(non_loopback_address() is None, "no non-loopback IPv4 address")
class Plaintext(unittest.TestCase):
    """LOGIN over cleartext from a non-loopback peer needs TLS or --allow-plaintext."""

    def start(self, *extra):
        self.tmp = tempfile.mkdtemp(prefix="imapq-tls-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.cert, key = make_pair(self.tmp, "a")
        self.addr = non_loopback_address()
        d = harness.Daemon(extra_args=["--imap", self.addr + ":0", "--tls-cert", self.cert,
                                       "--tls-key", key] + list(extra))
        self.addCleanup(d.cleanup)
        return d.start()

    def connect(self, d):
        s = socket.create_connection((self.addr, d.ports["imap"]),
                                     source_address=(self.addr, 0))
        c = Lines(s)
        self.addCleanup(lambda: c.sock.close())
        return c

    def test_login_needs_tls(self):
        d = self.start()
        user, password, _ = d.credentials()
        c = self.connect(d)
        greeting = c.line()
        self.assertIn("LOGINDISABLED", greeting)
        self.assertIn("STARTTLS", greeting)
        self.assertNotIn("AUTH=PLAIN", greeting)
        c.send(("a LOGIN %s %s\r\n" % (user, password)).encode())
        self.assertEqual(c.line(), "a NO [PRIVACYREQUIRED] LOGIN is disabled on unencrypted "
                                   "connections")
        c.send(b"b AUTHENTICATE PLAIN AGRlbW8AeA==\r\n")
        self.assertTrue(c.line().startswith("b NO [PRIVACYREQUIRED]"))
        c.send(b"c STARTTLS\r\n")
        self.assertEqual(c.line(), "c OK Begin TLS negotiation now")
        c.starttls(verifying_context(self.cert))
        caps = c.line()
        self.assertIn("AUTH=PLAIN", caps)
        self.assertNotIn("LOGINDISABLED", caps)
        c.send(("d LOGIN %s %s\r\n" % (user, password)).encode())
        self.assertEqual(c.until_tagged("d")[-1], "d OK Logged in")
        self.assertEqual(d.stop(), 0)

    def test_allow_plaintext_option(self):
        d = self.start("--allow-plaintext")
        user, password, _ = d.credentials()
        c = self.connect(d)
        greeting = c.line()
        self.assertIn("AUTH=PLAIN", greeting)
        self.assertNotIn("LOGINDISABLED", greeting)
        c.send(("a LOGIN %s %s\r\n" % (user, password)).encode())
        self.assertEqual(c.until_tagged("a")[-1], "a OK Logged in")
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    harness.main()
