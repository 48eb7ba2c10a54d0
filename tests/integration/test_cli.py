"""The imapq command line against a real imapqd: every command's success and an error path,
--help and usage errors, exit statuses, and where the URL and token come from."""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

import clitools
import harness
from clitools import imapq_path

# Seconds any single imapq run may take before the test fails.
PATIENCE = clitools.ImapqTestCase.patience


class CliTestCase(clitools.ImapqTestCase):
    prefix = "cli"

    def claim_json(self, queue, *extra):
        return json.loads(self.ok("--json", "claim", queue, *extra))["messages"]


class HelpTest(CliTestCase):

    def test_help_lists_commands_and_exit_statuses(self):
        out = self.ok("--help", auth=False)
        for word in ("queues", "stats", "create", "delete", "purge", "enqueue", "claim", "ack",
                     "nack", "extend", "peek", "dead", "tail", "work", "Exit status",
                     "not found", "conflict", "--json", "--data"):
            self.assertIn(word, out)

    def test_every_command_has_help(self):
        for cmd in ("queues", "stats", "create", "delete", "purge", "enqueue", "claim", "ack",
                    "nack", "extend", "peek", "dead", "tail", "work"):
            out = self.ok(cmd, "--help", auth=False)
            self.assertIn("Usage: imapq %s" % cmd, out)
            self.assertIn("--url", out)

    def test_usage_errors(self):
        self.fails(2, auth=False)
        _, err = self.fails(2, "frobnicate", auth=False)
        self.assertIn("unknown command", err)
        self.fails(2, "stats")
        self.fails(2, "stats", "a", "b")
        self.fails(2, "claim", "q", "--max", "0")
        self.fails(2, "claim", "q", "--bogus")
        self.fails(2, "ack", "q", "x", "1-1")
        self.fails(2, "create", "q", "--lease", "0")
        self.fails(2, "peek", "q", "--state", "lost")
        self.fails(2, "dead", "q")
        self.fails(2, "work", "--queue", "q")
        self.fails(2, "work", "true")


class QueueCommandsTest(CliTestCase):

    def test_create_update_stats_delete(self):
        out = self.ok("create", "settings", "--lease", "7", "--max-attempts", "2")
        self.assertIn("created queue settings", out)
        self.assertRegex(out, r"lease\s+7 s")
        out = self.ok("create", "settings", "--retention", "60")
        self.assertIn("updated queue settings", out)
        stats = json.loads(self.ok("--json", "stats", "settings"))
        self.assertEqual(stats["settings"], {"lease": 7, "max_attempts": 2, "retention": 60,
                                             "max_messages": 10000000})
        self.assertRegex(self.ok("stats", "settings"), r"ready\s+0")
        self.assertIn("deleted queue settings", self.ok("delete", "settings"))
        _, err = self.fails(3, "stats", "settings")
        self.assertIn("HTTP 404 not_found", err)
        self.fails(3, "delete", "settings")

    def test_create_refused_name(self):
        out, err = self.fails(1, "--json", "create", "bad/dead")
        self.assertIn("HTTP 400 invalid", err)
        self.assertEqual(json.loads(out)["error"]["code"], "invalid")

    def test_queues_lists_counts(self):
        q = self.queue()
        self.ok("enqueue", q, "one")
        out = self.ok("queues")
        line = [l for l in out.splitlines() if l.split()[0] == q]
        self.assertEqual(line[0].split()[1:], ["1", "0", "0", "0"])
        listed = json.loads(self.ok("queues", "--json"))["queues"]
        self.assertIn(q, [e["name"] for e in listed])

    def test_unknown_token_and_unreachable_daemon(self):
        _, err = self.fails(5, "--url", self.url, "--token", "wrong", "queues", auth=False)
        self.assertIn("HTTP 401 unauthorized", err)
        _, err = self.fails(1, "--url", "http://127.0.0.1:1", "--token", "t", "queues",
                            auth=False)
        self.assertIn("cannot reach", err)

    def test_url_and_token_from_environment_and_data_folder(self):
        env = {"IMAPQ_URL": self.url + "/", "IMAPQ_TOKEN": self.token}
        self.assertIn("QUEUE", self.ok("queues", auth=False, env=env))
        out = self.ok("--data", self.data, "queues", auth=False, env={"IMAPQ_URL": self.url})
        self.assertIn("QUEUE", out)
        _, err = self.fails(1, "--data", "/nonexistent", "queues", auth=False,
                            env={"IMAPQ_URL": self.url})
        self.assertIn("/nonexistent/credentials", err)

    def test_purge(self):
        q = self.queue()
        self.ok("enqueue", q, "--lines", stdin="a\nb\nc\n")
        self.assertIn("purged 3 jobs", self.ok("purge", q))
        self.assertEqual(json.loads(self.ok("--json", "stats", q))["stats"]["ready"], 0)
        self.fails(3, "purge", "no-such-queue")


class JobCommandsTest(CliTestCase):

    def test_enqueue_forms(self):
        q = self.queue()
        self.assertRegex(self.ok("enqueue", q, '{"n": 12345678901234567890}'),
                         r"enqueued job \d+ on " + q)
        self.ok("enqueue", q, stdin="plain text from stdin")
        with tempfile.NamedTemporaryFile("wb", delete=False) as f:
            f.write(b"\x00\x01binary")
        self.addCleanup(os.unlink, f.name)
        self.ok("enqueue", q, "--file", f.name)
        self.ok("enqueue", q, "--content-type", "text/csv", "a,b")
        out = self.ok("enqueue", q, "--lines", stdin='{"k":1}\n\nline two\n')
        self.assertEqual(len(out.splitlines()), 2)
        self.ok("enqueue", q, "--delay", "60", "later")
        jobs = json.loads(self.ok("--json", "peek", q, "--body", "--limit", "10"))["messages"]
        self.assertEqual([j["content_type"] for j in jobs],
                         ["application/json", "text/plain", "application/octet-stream",
                          "text/csv", "application/json", "text/plain"])
        self.assertEqual(jobs[1]["body"], "plain text from stdin")
        self.assertEqual(jobs[5]["body"], "line two")
        delayed = json.loads(self.ok("--json", "peek", q, "--state", "delayed"))["messages"]
        self.assertEqual(len(delayed), 1)
        # The JSON body comes back byte for byte, big number included.
        out = self.ok("claim", q)
        self.assertIn('{"n": 12345678901234567890}', out)
        _, err = self.fails(3, "enqueue", "no-such-queue", "x")
        self.assertIn("HTTP 404 not_found", err)

    def test_claim_ack(self):
        q = self.queue()
        self.ok("enqueue", q, "work me")
        out = self.ok("claim", q)
        self.assertRegex(out, r"job \d+ attempt 1 receipt \d+-\d+ lease until ")
        self.assertIn("work me", out)
        _, err = self.fails(3, "claim", q)
        self.assertIn("nothing to claim", err)
        self.ok("enqueue", q, "second")
        [job] = self.claim_json(q, "--lease", "60")
        self.assertIn("acked job %s" % job["id"], self.ok("ack", q, job["id"], job["receipt"]))
        _, err = self.fails(3, "ack", q, job["id"], job["receipt"])
        self.assertIn("HTTP 404 no_message", err)
        self.fails(3, "claim", "no-such-queue")

    def test_claim_waits(self):
        q = self.queue()
        started = time.monotonic()
        self.fails(3, "claim", q, "--wait", "1")
        self.assertGreaterEqual(time.monotonic() - started, 0.9)

    def test_extend_and_nack(self):
        q = self.queue()
        self.ok("enqueue", q, "x")
        [job] = self.claim_json(q)
        out = self.ok("extend", q, job["id"], job["receipt"], "--lease", "120")
        self.assertRegex(out, r"extended job %s: receipt \d+-\d+ lease until" % job["id"])
        new = json.loads(self.ok("--json", "extend", q, job["id"],
                                 out.split("receipt ")[1].split()[0]))["receipt"]
        _, err = self.fails(4, "ack", q, job["id"], job["receipt"])
        self.assertIn("HTTP 409 modified", err)
        self.fails(4, "extend", q, job["id"], job["receipt"])
        self.fails(4, "nack", q, job["id"], job["receipt"])
        out = self.ok("nack", q, job["id"], new, "--delay", "30")
        self.assertIn("released job %s, ready again in 30 s" % job["id"], out)
        out = self.ok("peek", q, "--state", "delayed")
        self.assertRegex(out, r"(?m)^%s\s+delayed\s+1\s" % job["id"])
        self.fails(2, "nack", q, job["id"], new, "--lease", "3")

    def test_peek_states(self):
        q = self.queue()
        self.ok("enqueue", q, "--lines", stdin="a\nb\n")
        self.claim_json(q)
        out = self.ok("peek", q)
        self.assertEqual(len(out.splitlines()), 2)  # header and the one ready job
        out = self.ok("peek", q, "--state", "claimed", "--body")
        self.assertRegex(out, r"\bclaimed\b")
        self.assertIn("\na\n", out)
        self.fails(3, "peek", "no-such-queue")

    def test_dead_list_and_requeue(self):
        q = self.queue("--max-attempts", "1")
        self.ok("enqueue", q, "doomed")
        [job] = self.claim_json(q)
        self.ok("nack", q, job["id"], job["receipt"])
        out = self.ok("dead", "list", q, "--body")
        self.assertIn("doomed", out)
        dead = json.loads(self.ok("--json", "dead", "list", q))["messages"]
        self.assertEqual(len(dead), 1)
        self.fails(3, "dead", "requeue", q, "999")
        self.assertIn("requeued 1 jobs", self.ok("dead", "requeue", q, dead[0]["id"]))
        self.assertEqual(json.loads(self.ok("--json", "stats", q))["stats"]["ready"], 1)
        self.assertIn("requeued 0 jobs", self.ok("dead", "requeue", q))
        self.fails(3, "dead", "list", "no-such-queue")


class TailTest(CliTestCase):

    def test_tail_follows_changes_until_interrupted(self):
        q = self.queue()
        self.ok("enqueue", q, "before")
        cmd = [imapq_path(), "--url", self.url, "--token", self.token, "tail", q]
        tail = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: tail.poll() is None and tail.kill())
        time.sleep(1.5)  # tail starts from the queue's current mod-sequence
        self.ok("enqueue", q, "after")
        [job] = self.claim_json(q)
        self.ok("ack", q, job["id"], job["receipt"])
        lines = []
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            line = tail.stdout.readline()
            if not line:
                self.fail("tail ended early: %s" % tail.stderr.read())
            lines.append(line.strip())
            if "removed" in line:
                break
        tail.send_signal(signal.SIGINT)
        self.assertEqual(tail.wait(PATIENCE), 0)
        tail.stdout.close()
        tail.stderr.close()
        text = "\n".join(lines)
        self.assertRegex(text, r"\d+ job 2 ready attempts 0")
        self.assertRegex(text, r"\d+ removed 1")
        self.assertNotRegex(text, r"job 1 ready")  # older than the start

    def test_tail_since_zero_json(self):
        q = self.queue()
        self.ok("enqueue", q, "one")
        cmd = [imapq_path(), "--url", self.url, "--token", self.token, "--json", "tail", q,
               "--since", "0"]
        tail = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = tail.stdout.readline()
        tail.send_signal(signal.SIGTERM)
        self.assertEqual(tail.wait(PATIENCE), 0)
        change = json.loads(line)
        self.assertEqual((change["id"], change["state"]), ("1", "ready"))
        tail.stdout.close()
        tail.stderr.close()

    def test_tail_missing_queue(self):
        _, err = self.fails(3, "tail", "no-such-queue")
        self.assertIn("HTTP 404", err)


if __name__ == "__main__":
    harness.main()
