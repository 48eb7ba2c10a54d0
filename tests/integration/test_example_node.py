"""The Node.js examples (examples/node: imapflow from npm) against a real imapqd: the producer
fills a queue by APPEND while two node workers and examples/worker.py (imaplib) race for its
jobs, each acked exactly once and a failing job dead-lettered; the worker's conditional store
reads [MODIFIED] that imapflow's own messageFlagsAdd reports as success.

The dependencies are installed as a user would: `npm ci` in examples/node, reused while
node_modules matches package-lock.json. Without node or npm (or with a node older than the
examples need) the tests are skipped; with them, any failure, npm ci's included, fails."""
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import harness

EXAMPLES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "..", "examples"))
NODE_DIR = os.path.join(EXAMPLES, "node")
WORKER_PY = os.path.join(EXAMPLES, "worker.py")
# The oldest Node.js that imapflow (and so the examples) runs on.
NODE_MAJOR = 20
# Seconds npm ci may take; it downloads about 25 small packages.
NPM_SECONDS = 300


def node_missing():
    """Why the examples cannot run here (a skip message), or None."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "node and npm are needed for examples/node (%s missing)" % (
            "node" if not node else "npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    m = re.match(r"v(\d+)\.", version)
    if not m or int(m.group(1)) < NODE_MAJOR:
        return "examples/node needs Node.js %d or newer, found %s" % (NODE_MAJOR,
                                                                     version.strip() or "?")
    return None


def installed():
    """True when node_modules holds exactly what package-lock.json pins."""
    try:
        with open(os.path.join(NODE_DIR, "package-lock.json")) as f:
            wanted = json.load(f)["packages"]
        with open(os.path.join(NODE_DIR, "node_modules", ".package-lock.json")) as f:
            have = json.load(f)["packages"]
    except (OSError, ValueError, KeyError):
        return False
    wanted.pop("", None)
    return wanted == have


def npm_ci():
    """Runs `npm ci` in examples/node unless node_modules is current; raises on failure. A lock
    keeps two test runs from installing into the same tree at once."""
    lock = os.path.join(tempfile.gettempdir(), "imapq-npm-%s.lock" %
                        hashlib.sha256(NODE_DIR.encode()).hexdigest()[:16])
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if installed():
            return
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                           capture_output=True, text=True, timeout=NPM_SECONDS)
        if r.returncode != 0 or not installed():
            raise AssertionError("npm ci in %s failed (%d):\n%s%s" % (NODE_DIR, r.returncode,
                                                                      r.stdout, r.stderr))


# Drives worker.js's Worker step by step: argv is PORT USER PASSWORD QUEUE CLAIMED_UID MODSEQ,
# where another client claimed CLAIMED_UID after it had mod-sequence MODSEQ. Prints one JSON
# object with what each step answered.
STALE_SCRIPT = r"""
import { pathToFileURL } from 'node:url';
const [port, user, password, queue, uid, modseq] = process.argv.slice(1);
const { Worker } = await import(pathToFileURL(process.env.WORKER_JS).href);
const w = new Worker({ host: '127.0.0.1', port: Number(port), user, password, queue });
await w.open();
const since = BigInt(modseq);
const library = await w.client.messageFlagsAdd(uid, ['$Claimed'],
                                               { uid: true, unchangedSince: since });
const claim = await w.conditionalStore(Number(uid), since, '+FLAGS.SILENT', ['$Claimed']);
const ack = await w.conditionalStore(Number(uid), since, '+FLAGS.SILENT', ['\\Deleted']);
const next = await w.claim();
const acked = await w.conditionalStore(next.uid, next.receipt, '+FLAGS.SILENT', ['\\Deleted']);
await w.expunge(next.uid);
await w.client.logout();
const text = (v) => (v === null ? null : String(v));
console.log(JSON.stringify({ library, claim: text(claim), ack: text(ack), next: next.uid,
                             receipt: text(next.receipt), acked: text(acked) }));
"""


class NodeExampleTest(harness.ApiTestCase):

    @classmethod
    def setUpClass(cls):
        why = node_missing()
        if why:
            print("skip: " + why, flush=True)
            raise unittest.SkipTest(why)
        npm_ci()
        super().setUpClass()

    def node(self, script, *args):
        user, password, _ = self.daemon.credentials()
        return subprocess.Popen(["node", os.path.join(NODE_DIR, script), "--host", "127.0.0.1",
                                 "--port", str(self.daemon.ports["imap"]), "--user", user,
                                 "--password=" + password] + list(args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def python_worker(self, queue):
        user, password, _ = self.daemon.credentials()
        return subprocess.Popen([sys.executable, WORKER_PY, "--host", "127.0.0.1",
                                 "--port", str(self.daemon.ports["imap"]), "--user", user,
                                 "--password=" + password, "--queue", queue],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, proc):
        """Waits for a child, which must exit 0 and write nothing on stderr: its stdout."""
        status, out, err = super().finish(proc)
        self.assertEqual((status, err), (0, ""), out)
        return out

    def peek(self, queue, state):
        status, reply = self.http("GET", "/v1/queues/%s/messages?state=%s&limit=1000&body=true" %
                                  (queue, state))
        self.assertEqual(status, 200, reply)
        return reply["messages"]

    def test_racing_workers_drain_what_the_producer_enqueued(self):
        q = "race"
        status, reply = self.http("PUT", "/v1/queues/" + q, {"max_attempts": 2})
        self.assertEqual(status, 201, reply)
        # The node workers start first and must take the first ten jobs (nobody else is there
        # yet), so they are proven in the race however slowly node starts; then the Python
        # worker joins and all three race for the rest.
        workers = [self.node("worker.js", "--queue", q) for _ in range(2)]
        out = self.finish(self.node("producer.js", "--queue", q, "--count", "10"))
        good = re.findall(r"^job (\d+): \{\"n\":\d+\}$", out, re.M)
        self.assertEqual(len(good), 10, out)
        self.assertIn("enqueued 10 jobs", out)
        self.wait_for("the node workers' first acks",
                      lambda: self.stats(q)["acks"] >= 1)
        workers.append(self.python_worker(q))
        time.sleep(0.5)
        out = self.finish(self.node("producer.js", "--queue", q, "--count", "10"))
        more = re.findall(r"^job (\d+): \{\"n\":\d+\}$", out, re.M)
        self.assertEqual(len(more), 10, out)
        good += more
        out = self.finish(self.node("producer.js", "--queue", q, '{"n":20,"task":"fail"}'))
        bad = re.findall(r"^job (\d+): ", out, re.M)
        self.assertEqual(len(bad), 1, out)

        # 20 acks and the failing job's two attempts, the second one dead-lettering it.
        self.wait_for("20 acks and a dead letter",
                      lambda: (lambda s: s["acks"] == 20 and s["dead"] == 1)(self.stats(q)))
        for w in workers:
            w.send_signal(signal.SIGTERM)
        outs = [self.finish(w) for w in workers]

        log = "".join(outs)
        acked = re.findall(r"^job (\d+): acked$", log, re.M)
        self.assertEqual(sorted(acked, key=int), sorted(good, key=int), log)
        for attempt in (1, 2):
            self.assertEqual(re.findall(r"^job (\d+): failed, released after attempt %d$" %
                                        attempt, log, re.M), bad, log)
        self.assertNotIn("lost before the ack", log)
        # Every claim a worker made shows as one "job N: BODY" line, and the server counted
        # the same claims: 20 plus the failing job's 2.
        claims = [len(re.findall(r"^job \d+: [{\[]", out, re.M)) for out in outs]
        handled = [int(re.search(r"^handled (\d+) jobs?$", out, re.M).group(1)) for out in outs]
        self.assertEqual(claims, handled, log)
        self.assertEqual(sum(handled), 22, log)
        self.assertGreater(handled[0] + handled[1], 0, "the node workers claimed nothing")

        stats = self.stats(q)
        self.assertEqual((stats["ready"], stats["claimed"], stats["delayed"], stats["dead"]),
                         (0, 0, 0, 1))
        self.assertEqual((stats["enqueued"], stats["claims"], stats["acks"],
                          stats["dead_lettered"]), (21, 22, 20, 1))
        dead = self.peek(q, "dead")
        self.assertEqual([(m["body"], m["attempts"]) for m in dead],
                         [({"n": 20, "task": "fail"}, 2)])

    def test_a_lost_race_reads_modified_where_imapflow_says_true(self):
        q = "stale"
        self.assertEqual(self.http("PUT", "/v1/queues/" + q)[0], 201)
        ids = [self.http("POST", "/v1/queues/%s/messages" % q, {"n": n})[1]["id"]
               for n in range(2)]
        # Python reads the first job's mod-sequence and claims it: a node worker that read the
        # same mod-sequence has lost the race.
        m = self.daemon.imaplib()
        try:
            m.enable("CONDSTORE")
            self.assertEqual(m.select(q)[0], "OK")
            _, data = m.uid("FETCH", ids[0], "(FLAGS MODSEQ)")
            modseq = re.search(rb"MODSEQ \((\d+)\)", data[0]).group(1).decode()
            typ, data = m.uid("STORE", ids[0], "(UNCHANGEDSINCE %s)" % modseq,
                              "+FLAGS.SILENT ($Claimed)")
            self.assertEqual(typ, "OK")
            self.assertNotIn(b"MODIFIED", b" ".join(d for d in data if d))
        finally:
            m.logout()

        user, password, _ = self.daemon.credentials()
        r = subprocess.run(["node", "--input-type=module", "-e", STALE_SCRIPT,
                            str(self.daemon.ports["imap"]), user, password, q, ids[0], modseq],
                           capture_output=True, text=True, timeout=harness.PATIENCE,
                           env=dict(os.environ, WORKER_JS=os.path.join(NODE_DIR, "worker.js")))
        self.assertEqual((r.returncode, r.stderr), (0, ""), r.stdout)
        got = json.loads(r.stdout)
        # imapflow resolves true although the server answered OK [MODIFIED]: the reason the
        # worker reads the tagged response itself.
        self.assertIs(got["library"], True)
        self.assertIsNone(got["claim"])
        self.assertIsNone(got["ack"])
        # The worker then claims and acks the other job, each step with a newer receipt; the
        # server counted two claims, the Python one and this.
        self.assertEqual(str(got["next"]), ids[1])
        self.assertGreater(int(got["acked"]), int(got["receipt"]))
        self.assertEqual([j["id"] for j in self.peek(q, "claimed")], [ids[0]])
        stats = self.stats(q)
        self.assertEqual((stats["ready"], stats["claimed"], stats["claims"], stats["acks"]),
                         (0, 1, 2, 1))

    def test_once_usage_and_login_errors(self):
        q = "once"
        self.finish(self.node("producer.js", "--queue", q, "--count", "3"))
        out = self.finish(self.node("worker.js", "--queue", q, "--once"))
        self.assertEqual(len(re.findall(r"^job \d+: acked$", out, re.M)), 3, out)
        self.assertIn("handled 3 jobs", out)
        # The producer reuses an existing queue.
        out = self.finish(self.node("producer.js", "--queue", q, "--count", "1"))
        self.assertIn("enqueued 1 job\n", out)
        out = self.finish(self.node("worker.js", "--queue", q, "--max-jobs", "1"))
        self.assertIn("handled 1 job\n", out)
        self.assertEqual(self.stats(q)["acks"], 4)

        for script in ("worker.js", "producer.js"):
            p = subprocess.run(["node", os.path.join(NODE_DIR, script), "--user", "u"],
                               capture_output=True, text=True, timeout=harness.PATIENCE)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("--queue are required", p.stderr)
            p = subprocess.run(["node", os.path.join(NODE_DIR, script), "--port",
                                str(self.daemon.ports["imap"]), "--user", "demo",
                                "--password", "wrong", "--queue", q],
                               capture_output=True, text=True, timeout=harness.PATIENCE)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertRegex(p.stderr, r"^%s: .+" % re.escape(script))


if __name__ == "__main__":
    harness.main()
