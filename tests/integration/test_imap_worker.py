"""The worker protocol over plain IMAP, step by step as README.md "Workers over IMAP" shows it:
claim, ack, release, release with a delay, lease renewal, attempts, the queue's settings through
METADATA, lease expiry re-delivery and dead letters in "<queue>/dead". Lease expiry, the end of
delays and dead-lettering are the daemon's queue service at work, so these tests need it running
inside imapqd."""
import re
import time

import harness

# Seconds to wait for the daemon's timers (lease expiry, delays) beyond their due time.
TIMER_SLACK = 4.0


def job(n):
    return "Subject: job %d\r\n\r\n{\"n\": %d}\r\n" % (n, n)


class Worker:
    """One worker's IMAP connection with the queue selected and CONDSTORE on."""

    def __init__(self, daemon, queue):
        self.c = daemon.raw()
        self.queue = queue
        self.ok("ENABLE CONDSTORE")
        self.ok("SELECT " + queue)

    def ok(self, text):
        untagged, tagged = self.c.command(text)
        assert re.match(r"t\d+ OK", tagged), (text, tagged, untagged)
        return untagged, tagged

    def append(self, n):
        body = job(n)
        self.c.send("a%d APPEND %s {%d+}\r\n%s\r\n" % (n, self.queue, len(body), body))
        _, tagged = self.c.read_until("a%d" % n)
        m = re.search(r"APPENDUID \d+ (\d+)", tagged)
        assert m, tagged
        return int(m.group(1))

    def next_ready(self):
        """The lowest ready UID, or None."""
        untagged, _ = self.ok("UID SEARCH RETURN (MIN) UNKEYWORD $Claimed UNKEYWORD $Delayed "
                              "UNDELETED")
        for line in untagged:
            m = re.match(r"\* ESEARCH \(TAG \"t\d+\"\) UID MIN (\d+)", line)
            if m:
                return int(m.group(1))
        return None

    def flags_modseq(self, uid):
        untagged, _ = self.ok("UID FETCH %d (FLAGS MODSEQ)" % uid)
        for line in untagged:
            m = re.search(r"UID %d FLAGS \(([^)]*)\) MODSEQ \((\d+)\)" % uid, line)
            if m:
                return m.group(1).split(), int(m.group(2))
        return None, None

    def conditional(self, uid, since, item):
        """A UID STORE with UNCHANGEDSINCE: (new mod-sequence or None, tagged line)."""
        untagged, tagged = self.c.command("UID STORE %d (UNCHANGEDSINCE %d) %s" % (uid, since,
                                                                                   item))
        echo = None
        for line in untagged:
            m = re.search(r"FETCH \(UID %d MODSEQ \((\d+)\)\)" % uid, line)
            if m:
                echo = int(m.group(1))
        return echo, tagged

    def claim(self):
        """Claims the lowest ready job: (uid, receipt), or (None, None) when none is ready."""
        while True:
            uid = self.next_ready()
            if uid is None:
                return None, None
            flags, modseq = self.flags_modseq(uid)
            if flags is None or {"$Claimed", "$Delayed", "\\Deleted"} & set(flags):
                continue
            receipt, tagged = self.conditional(uid, modseq, "+FLAGS.SILENT ($Claimed)")
            if receipt is not None and "[MODIFIED" not in tagged:
                return uid, receipt

    def ack(self, uid, receipt):
        echo, tagged = self.conditional(uid, receipt, "+FLAGS.SILENT (\\Deleted)")
        if echo is None:
            return False, tagged
        self.ok("UID EXPUNGE %d" % uid)
        return True, tagged

    def annotation(self, uid, entry):
        untagged, _ = self.ok("UID FETCH %d (ANNOTATION (/vendor/imapq/%s value.shared))"
                              % (uid, entry))
        for line in untagged:
            m = re.search(r"\(value\.shared (NIL|\"(\d+)\")\)", line)
            if m:
                return None if m.group(1) == "NIL" else int(m.group(2))
        raise AssertionError("no annotation in %r" % (untagged,))

    def close(self):
        self.c.close()


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


class WorkerProtocol(harness.DaemonTestCase):
    def queue(self, name, **settings):
        """Creates a queue with the given METADATA settings and returns a worker on it."""
        c = self.daemon.raw()
        _, tagged = c.command("CREATE " + name)
        self.assertIn("OK", tagged)
        for key, value in settings.items():
            _, tagged = c.command('SETMETADATA %s (/shared/vendor/imapq/%s "%s")'
                                  % (name, key.replace("_", "-"), value))
            self.assertIn("OK", tagged)
        c.close()
        w = Worker(self.daemon, name)
        self.addCleanup(w.close)
        return w

    def wait_dead_letter(self, name):
        """Waits for one dead letter in <name>/dead; returns a session to inspect it."""
        dead = self.daemon.raw()
        self.addCleanup(dead.close)

        def moved():
            untagged, _ = dead.command("STATUS %s/dead (MESSAGES)" % name)
            return any("MESSAGES 1" in line for line in untagged)
        self.assertTrue(wait_for(moved, 1 + TIMER_SLACK), "no dead letter")
        return dead

    def test_capabilities(self):
        c = self.daemon.raw()
        untagged, _ = c.command("CAPABILITY")
        self.assertIn("METADATA", untagged[0].split())
        self.assertIn("ANNOTATE-EXPERIMENT-1", untagged[0].split())
        c.close()

    def test_claim_ack_and_attempts(self):
        w = self.queue("w-ack")
        uid = w.append(1)
        self.assertEqual(w.annotation(uid, "attempts"), 0)
        self.assertIsNone(w.annotation(uid, "due"))
        got, receipt = w.claim()
        self.assertEqual(got, uid)
        self.assertEqual(w.annotation(uid, "attempts"), 1)
        due = w.annotation(uid, "due")
        self.assertTrue(abs(due - (time.time() + 30)) < 3, due)
        # A worker that read the mod-sequence before this claim loses.
        echo, tagged = w.conditional(uid, receipt - 1, "+FLAGS.SILENT ($Claimed)")
        self.assertIsNone(echo)
        self.assertIn("[MODIFIED %d]" % uid, tagged)
        ok, tagged = w.ack(uid, receipt)
        self.assertTrue(ok, tagged)
        self.assertIsNone(w.next_ready())
        # Acking again finds nothing and gets no echo.
        ok, _ = w.ack(uid, receipt)
        self.assertFalse(ok)

    def test_release_counts_attempts(self):
        w = self.queue("w-release")
        uid = w.append(1)
        _, receipt = w.claim()
        echo, tagged = w.conditional(uid, receipt, "-FLAGS.SILENT ($Claimed)")
        self.assertIsNotNone(echo, tagged)
        self.assertIsNone(w.annotation(uid, "due"))
        self.assertEqual(w.next_ready(), uid)
        got, receipt = w.claim()
        self.assertEqual(got, uid)
        self.assertEqual(w.annotation(uid, "attempts"), 2)
        # The receipt of the first claim no longer acks.
        ok, tagged = w.ack(uid, echo - 1)
        self.assertFalse(ok)
        self.assertIn("[MODIFIED", tagged)
        self.assertTrue(w.ack(uid, receipt)[0])

    def test_release_with_delay(self):
        w = self.queue("w-delay")
        uid = w.append(1)
        _, receipt = w.claim()
        echo, tagged = w.conditional(uid, receipt,
                                     'ANNOTATION (/vendor/imapq/delay (value.shared "2"))')
        self.assertIsNotNone(echo, tagged)
        self.assertNotIn("MODIFIED", tagged)
        flags, _ = w.flags_modseq(uid)
        self.assertIn("$Delayed", flags)
        self.assertNotIn("$Claimed", flags)
        due = w.annotation(uid, "due")
        self.assertTrue(abs(due - (time.time() + 2)) < 3, due)
        self.assertIsNone(w.next_ready())
        # The daemon ends the delay; the job is ready again.
        self.assertTrue(wait_for(lambda: w.next_ready() == uid, 2 + TIMER_SLACK))
        flags, _ = w.flags_modseq(uid)
        self.assertNotIn("$Delayed", flags)
        # Delay 0 releases at once.
        _, receipt = w.claim()
        echo, tagged = w.conditional(uid, receipt,
                                     'ANNOTATION (/vendor/imapq/delay (value.shared "0"))')
        self.assertIsNotNone(echo, tagged)
        self.assertEqual(w.next_ready(), uid)
        # Releasing a job that is not claimed is refused.
        _, modseq = w.flags_modseq(uid)
        _, tagged = w.conditional(uid, modseq,
                                  'ANNOTATION (/vendor/imapq/delay (value.shared "0"))')
        self.assertIn("NO [CANNOT]", tagged)

    def test_lease_renewal_beats_expiry(self):
        w = self.queue("w-renew", lease_seconds=1)
        uid = w.append(1)
        _, receipt = w.claim()
        renewed, tagged = w.conditional(uid, receipt,
                                        'ANNOTATION (/vendor/imapq/lease (value.shared "60"))')
        self.assertIsNotNone(renewed, tagged)
        self.assertGreater(renewed, receipt)
        self.assertTrue(abs(w.annotation(uid, "due") - (time.time() + 60)) < 3)
        # The renewed lease outlives the queue's 1 s lease.
        time.sleep(1 + TIMER_SLACK / 2)
        flags, _ = w.flags_modseq(uid)
        self.assertIn("$Claimed", flags)
        # The old receipt is stale for renewals and acks alike; the new one works.
        echo, tagged = w.conditional(uid, receipt,
                                     'ANNOTATION (/vendor/imapq/lease (value.shared "60"))')
        self.assertIsNone(echo)
        self.assertIn("[MODIFIED %d]" % uid, tagged)
        self.assertFalse(w.ack(uid, receipt)[0])
        self.assertTrue(w.ack(uid, renewed)[0])

    def test_settings_through_metadata(self):
        w = self.queue("w-settings")
        untagged, _ = w.ok("GETMETADATA (DEPTH 1) w-settings /shared/vendor/imapq")
        self.assertEqual(untagged, [
            '* METADATA w-settings (/shared/vendor/imapq/dead-retention-seconds "604800" '
            '/shared/vendor/imapq/lease-seconds "30" /shared/vendor/imapq/max-attempts "5" '
            '/shared/vendor/imapq/max-messages "10000000")'])
        w.ok('SETMETADATA w-settings (/shared/vendor/imapq/lease-seconds "120" '
             '/shared/vendor/imapq/max-attempts "9")')
        untagged, _ = w.ok("GETMETADATA w-settings (/shared/vendor/imapq/lease-seconds "
                           "/shared/vendor/imapq/max-attempts)")
        self.assertEqual(untagged, [
            '* METADATA w-settings (/shared/vendor/imapq/lease-seconds "120" '
            '/shared/vendor/imapq/max-attempts "9")'])
        _, tagged = w.c.command('SETMETADATA w-settings (/shared/vendor/imapq/lease-seconds "0")')
        self.assertIn("NO [CANNOT]", tagged)
        # A claim takes the queue's lease.
        uid = w.append(1)
        w.claim()
        self.assertTrue(abs(w.annotation(uid, "due") - (time.time() + 120)) < 3)

    def test_lease_expiry_redelivers(self):
        w = self.queue("w-expire", lease_seconds=1)
        uid = w.append(1)
        got, receipt = w.claim()
        self.assertEqual(got, uid)
        # Nobody acks: the daemon releases the job when its lease runs out.
        self.assertTrue(wait_for(lambda: w.next_ready() == uid, 1 + TIMER_SLACK),
                        "the lease did not expire")
        ok, tagged = w.ack(uid, receipt)
        self.assertFalse(ok)
        self.assertIn("[MODIFIED %d]" % uid, tagged)
        # The second holder gets a lease long enough to ack on a loaded machine.
        w.ok('SETMETADATA w-expire (/shared/vendor/imapq/lease-seconds "60")')
        got, receipt = w.claim()
        self.assertEqual(got, uid)
        self.assertEqual(w.annotation(uid, "attempts"), 2)
        self.assertTrue(w.ack(uid, receipt)[0])

    def test_dead_letter_after_max_attempts(self):
        w = self.queue("w-dead", lease_seconds=1, max_attempts=2)
        uid = w.append(1)
        for attempt in (1, 2):
            got, _ = w.claim()
            self.assertEqual(got, uid, "claim %d" % attempt)
            if attempt == 1:
                self.assertTrue(wait_for(lambda: w.next_ready() == uid, 1 + TIMER_SLACK))
        # The second lease runs out: past max-attempts the job moves to w-dead/dead.
        dead = self.wait_dead_letter("w-dead")
        _, tagged = w.ok("NOOP")
        self.assertIsNone(w.next_ready())
        untagged, _ = dead.command("SELECT w-dead/dead")
        untagged, _ = dead.command("FETCH 1 (FLAGS ANNOTATION (/vendor/imapq/attempts "
                                   "value.shared) BODY.PEEK[TEXT])")
        text = "\n".join(untagged)
        self.assertIn('(/vendor/imapq/attempts (value.shared "2"))', text)
        self.assertNotIn("$Claimed", text)
        self.assertIn('{"n": 1}', text)

    def test_release_after_last_attempt_dead_letters(self):
        w = self.queue("w-spent", lease_seconds=60, max_attempts=2)
        uid = w.append(1)
        for attempt in (1, 2):
            got, receipt = w.claim()
            self.assertEqual(got, uid, "claim %d" % attempt)
            echo, tagged = w.conditional(uid, receipt, "-FLAGS.SILENT ($Claimed)")
            self.assertIsNotNone(echo, tagged)
        # The second release comes after the last attempt: the job is never ready again and
        # moves to the dead letters at once, without waiting for its 60 s lease.
        self.assertIsNone(w.next_ready())
        self.wait_dead_letter("w-spent")


if __name__ == "__main__":
    harness.main()
