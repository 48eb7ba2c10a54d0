"""SEARCH and UID SEARCH against the daemon: every key on a small mailbox of known messages
(appended with imaplib, flags and internal dates included), ESEARCH (RFC 4731), MODSEQ
(RFC 7162), the claim search, pending expunges and bad syntax."""
import imaplib
import random
import re
import threading
import time
import unittest

import harness

# Four messages (after one that is expunged, so UIDs 2..5 differ from sequence numbers 1..4).
MESSAGES = [
    # (flags, internal date, message)
    (r"(\Seen)", '"01-Feb-1994 10:00:00 +0000"',
     b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nCc: carol@example.com\r\n"
     b"Subject: Weekly report\r\nDate: Tue, 1 Feb 1994 10:00:00 +0000\r\nX-Queue: high\r\n"
     b"\r\nThe numbers are in.\r\n"),
    (r"(\Flagged \Answered)", '"15-Mar-2000 23:30:00 -0500"',
     b"From: bob@example.com\r\nTo: Alice <alice@example.com>\r\nBcc: dave@example.com\r\n"
     b"Subject: Invoice\r\nDate: Wed, 15 Mar 2000 23:30:00 -0500\r\n\r\nPlease pay.\r\n"),
    (r"(\Deleted \Draft $Claimed)", '"20-Jun-2024 12:00:00 +0000"',
     b"From: worker@example.com\r\nSubject: job one\r\n\r\n" + b"x" * 2000 + b"\r\n"),
    ("()", '"21-Jun-2024 12:00:00 +0000"',
     b"From: worker@example.com\r\nSubject: job two\r\n\r\ntiny\r\n"),
]


def numbers(untagged, kind="SEARCH"):
    """The numbers of the one untagged SEARCH response."""
    lines = [u for u in untagged if u.startswith("* %s" % kind)]
    assert len(lines) == 1, untagged
    return [int(x) for x in lines[0].split()[2:] if x.isdigit()]


class Search(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = harness.Daemon().start()
        m = cls.daemon.imaplib()
        m.create("search")
        m.append("search", None, None, b"Subject: gone\r\n\r\ngone\r\n")
        m.select("search")
        m.store("1", "+FLAGS", r"(\Deleted)")
        m.expunge()
        m.close()  # so the raw session below is the first to see the rest (\Recent)
        for flags, date, msg in MESSAGES:
            typ, _ = m.append("search", flags, date, msg)
            assert typ == "OK"
        m.logout()
        cls.c = cls.daemon.raw()
        _, tagged = cls.c.command("SELECT search")
        assert " OK " in tagged, tagged

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        status = cls.daemon.stop()
        cls.daemon.cleanup()
        assert status == 0, "imapqd exited with %s:\n%s" % (status, cls.daemon.stderr)

    def search(self, keys, uid=False):
        untagged, tagged = self.c.command(("UID SEARCH " if uid else "SEARCH ") + keys)
        self.assertIn(" OK ", tagged, keys)
        return numbers(untagged)

    def assert_keys(self, cases):
        for keys, want in cases:
            self.assertEqual(self.search(keys), want, keys)

    def test_flag_keys(self):
        self.assert_keys([
            ("ALL", [1, 2, 3, 4]),
            ("SEEN", [1]), ("UNSEEN", [2, 3, 4]),
            ("ANSWERED", [2]), ("UNANSWERED", [1, 3, 4]),
            ("FLAGGED", [2]), ("UNFLAGGED", [1, 3, 4]),
            ("DELETED", [3]), ("UNDELETED", [1, 2, 4]),
            ("DRAFT", [3]), ("UNDRAFT", [1, 2, 4]),
            ("KEYWORD $Claimed", [3]), ("UNKEYWORD $Claimed", [1, 2, 4]),
            ("KEYWORD $NotDefined", []), ("UNKEYWORD $NotDefined", [1, 2, 3, 4]),
            ("seen", [1]),
        ])

    def test_recent_new_old(self):
        # This session selected first, so every message is \Recent to it.
        self.assert_keys([("RECENT", [1, 2, 3, 4]), ("NEW", [2, 3, 4]), ("OLD", [])])

    def test_header_keys(self):
        self.assert_keys([
            ("FROM alice", [1]), ("FROM WORKER", [3, 4]), ("TO alice", [2]),
            ("CC carol", [1]), ("BCC dave", [2]), ("SUBJECT job", [3, 4]),
            ('SUBJECT "weekly REPORT"', [1]), ("SUBJECT nothing", []),
            ("HEADER X-Queue high", [1]), ('HEADER x-queue ""', [1]),
            ('HEADER X-Missing ""', []),
        ])

    def test_body_keys(self):
        self.assert_keys([
            ("BODY numbers", [1]), ("BODY weekly", []), ("TEXT weekly", [1]),
            ("TEXT pay", [2]), ("BODY tiny", [4]), ("TEXT {5+}\r\nPLEAS", [2]),
        ])

    def test_date_keys(self):
        self.assert_keys([
            # Internal dates compare by their UTC day: message 2 arrived on 16-Mar-2000 UTC.
            ("ON 1-Feb-1994", [1]), ("ON 16-Mar-2000", [2]), ("ON 15-Mar-2000", []),
            ("BEFORE 1-Jan-2000", [1]), ("BEFORE 16-Mar-2000", [1]),
            ("SINCE 20-Jun-2024", [3, 4]), ('SINCE "21-Jun-2024"', [4]),
            # The Date: header compares by its own calendar day; 3 and 4 have none.
            ("SENTON 15-Mar-2000", [2]), ("SENTBEFORE 1-Jan-2000", [1]),
            ("SENTSINCE 1-Jan-1995", [2]), ("SENTSINCE 1-Jan-1900", [1, 2]),
        ])

    def test_size_keys(self):
        self.assert_keys([("LARGER 1500", [3]), ("SMALLER 1500", [1, 2, 4]),
                          ("LARGER 4294967295", [])])

    def test_sets_and_structure(self):
        self.assert_keys([
            ("2,4", [2, 4]), ("*", [4]), ("3:*", [3, 4]), ("2:100", [2, 3, 4]),
            ("UID 3:4", [2, 3]), ("UID 5:*", [4]), ("UID 100:200", []),
            ("NOT SEEN", [2, 3, 4]), ("OR SEEN FLAGGED", [1, 2]), ("(SEEN)", [1]),
            ("OR (DELETED DRAFT) FROM alice", [1, 3]),
            ("NOT (OR SEEN FLAGGED) UNDELETED", [4]),
            ("1:3 UNSEEN SUBJECT job", [3]),
        ])

    def test_uid_search_answers_uids(self):
        self.assertEqual(self.search("ALL", uid=True), [2, 3, 4, 5])
        self.assertEqual(self.search("UNSEEN", uid=True), [3, 4, 5])
        self.assertEqual(self.search("2:3", uid=True), [3, 4])
        self.assertEqual(self.search("UID 4:*", uid=True), [4, 5])
        self.assertEqual(self.search("FROM worker", uid=True), [4, 5])

    def test_charset(self):
        self.assertEqual(self.search("CHARSET UTF-8 SUBJECT job"), [3, 4])
        self.assertEqual(self.search("CHARSET us-ascii SEEN"), [1])
        _, tagged = self.c.command("SEARCH CHARSET KOI8-R ALL")
        self.assertIn("NO [BADCHARSET (US-ASCII UTF-8)]", tagged)

    def test_esearch(self):
        c = self.c
        untagged, tagged = c.command("UID SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN", tag="e1")
        self.assertEqual(untagged, ['* ESEARCH (TAG "e1") UID MIN 3 MAX 5 COUNT 3 ALL 3:5'])
        self.assertIn("OK", tagged)
        untagged, _ = c.command("SEARCH RETURN () UNSEEN", tag="e2")
        self.assertEqual(untagged, ['* ESEARCH (TAG "e2") ALL 2:4'])
        untagged, _ = c.command("SEARCH RETURN (ALL) OR SEEN DELETED", tag="e3")
        self.assertEqual(untagged, ['* ESEARCH (TAG "e3") ALL 1,3'])
        untagged, _ = c.command("UID SEARCH RETURN (COUNT) KEYWORD $NotDefined", tag="e4")
        self.assertEqual(untagged, ['* ESEARCH (TAG "e4") UID COUNT 0'])
        untagged, _ = c.command("UID SEARCH RETURN (MIN MAX) SUBJECT nothing", tag="e5")
        self.assertEqual(untagged, ['* ESEARCH (TAG "e5") UID'])
        untagged, _ = c.command("SEARCH RETURN (COUNT MIN) UNDELETED", tag="e6")
        self.assertEqual(untagged, ['* ESEARCH (TAG "e6") MIN 1 COUNT 3'])
        untagged, _ = c.command("UID SEARCH RETURN (COUNT) UID 2:3 UNDELETED", tag="e7")
        self.assertEqual(untagged, ['* ESEARCH (TAG "e7") UID COUNT 2'])
        untagged, _ = c.command("UID SEARCH RETURN (MAX) UNDELETED", tag="e8")
        self.assertEqual(untagged, ['* ESEARCH (TAG "e8") UID MAX 5'])
        untagged, _ = c.command("UID SEARCH RETURN (MIN) LARGER 1000", tag="e9")
        self.assertEqual(untagged, ['* ESEARCH (TAG "e9") UID MIN 4'])

    def test_claim_search(self):
        untagged, tagged = self.c.command(
            "UID SEARCH RETURN (MIN) UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED", tag="w1")
        self.assertEqual(untagged, ['* ESEARCH (TAG "w1") UID MIN 2'])
        self.assertEqual(self.search("UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED",
                                     uid=True), [2, 3, 5])

    def test_bad_syntax(self):
        for keys in ["FOO", "SEEN BOGUS", "LARGER x", "LARGER", "BEFORE 32-Jan-2020",
                     "BEFORE 1-Feb-94", "OR SEEN", "NOT", "()", "HEADER Subject",
                     "UID x", "RETURN (BOGUS) ALL", "RETURN (MIN)", "", "MODSEQ x",
                     'MODSEQ "/flags/x" sometimes 5', "CHARSET"]:
            untagged, tagged = self.c.command("SEARCH " + keys if keys else "SEARCH")
            self.assertRegex(tagged, r"^t\d+ BAD ", keys)
            self.assertFalse([u for u in untagged if u.startswith("* SEARCH")], keys)
        # The session goes on normally.
        self.assertEqual(self.search("SEEN"), [1])


class ModseqSearch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = harness.Daemon().start()
        m = cls.daemon.imaplib()
        m.create("ms")
        for i in range(3):
            m.append("ms", None, None, b"Subject: m%d\r\n\r\nbody\r\n" % i)
        m.logout()

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        cls.daemon.cleanup()
        assert status == 0, "imapqd exited with %s:\n%s" % (status, cls.daemon.stderr)

    def test_modseq_key(self):
        c = self.daemon.raw()
        c.command("SELECT ms")
        # MODSEQ enables CONDSTORE, so the STORE below reports the new mod-sequence.
        untagged, tagged = c.command("SEARCH MODSEQ 1")
        self.assertIn(" OK ", tagged)
        all_modseq = int(re.search(r"\(MODSEQ (\d+)\)$", untagged[-1]).group(1))
        self.assertEqual(numbers(untagged), [1, 2, 3])
        untagged, _ = c.command(r"UID STORE 2 +FLAGS (\Flagged)")
        new = int(re.search(r"MODSEQ \((\d+)\)", untagged[0]).group(1))
        self.assertGreater(new, all_modseq)
        untagged, _ = c.command("SEARCH MODSEQ %d" % new)
        self.assertEqual(untagged, ["* SEARCH 2 (MODSEQ %d)" % new])
        untagged, _ = c.command(r'SEARCH MODSEQ "/flags/\\flagged" all %d' % new)
        self.assertEqual(untagged, ["* SEARCH 2 (MODSEQ %d)" % new])
        untagged, _ = c.command("UID SEARCH RETURN (ALL) MODSEQ %d" % new, tag="m1")
        self.assertEqual(untagged, ['* ESEARCH (TAG "m1") UID ALL 2 MODSEQ %d' % new])
        untagged, _ = c.command("UID SEARCH RETURN (MIN) MODSEQ 1", tag="m2")
        self.assertRegex(untagged[0], r'^\* ESEARCH \(TAG "m2"\) UID MIN 1 MODSEQ \d+$')
        self.assertLess(int(untagged[0].split()[-1]), new)
        untagged, _ = c.command("UID SEARCH RETURN (COUNT) MODSEQ 1", tag="m3")
        self.assertEqual(untagged, ['* ESEARCH (TAG "m3") UID COUNT 3 MODSEQ %d' % new])
        untagged, _ = c.command("SEARCH MODSEQ %d" % (new + 1))
        self.assertEqual(untagged, ["* SEARCH"])
        untagged, _ = c.command("SEARCH OR MODSEQ %d SEEN" % new)
        self.assertEqual(untagged, ["* SEARCH 2 (MODSEQ %d)" % new])
        c.close()


class PendingAndScale(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = harness.Daemon().start()

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        cls.daemon.cleanup()
        assert status == 0, "imapqd exited with %s:\n%s" % (status, cls.daemon.stderr)

    def test_unannounced_expunge_is_skipped(self):
        m = self.daemon.imaplib()
        m.create("pend")
        for i in range(4):
            m.append("pend", None, None, b"Subject: p%d\r\n\r\nbody\r\n" % i)
        c = self.daemon.raw()
        c.command("SELECT pend")
        m.select("pend")
        m.uid("STORE", "2", "+FLAGS", r"(\Deleted)")
        m.expunge()
        # SEARCH may not announce the expunge: message 2 still holds its number but is skipped.
        untagged, _ = c.command("SEARCH ALL")
        self.assertFalse([u for u in untagged if u.endswith("EXPUNGE")])
        self.assertEqual(numbers(untagged), [1, 3, 4])
        untagged, _ = c.command("SEARCH SUBJECT p")
        self.assertEqual(numbers(untagged), [1, 3, 4])
        # New messages from elsewhere are announced and found by the same search.
        m.append("pend", None, None, b"Subject: p4\r\n\r\nbody\r\n")
        untagged, _ = c.command("SEARCH RETURN (COUNT) UNSEEN", tag="x1")
        self.assertIn("* 5 EXISTS", untagged)
        self.assertIn('* ESEARCH (TAG "x1") COUNT 4', untagged)
        untagged, _ = c.command("UID SEARCH ALL")
        self.assertEqual(numbers(untagged), [1, 3, 4, 5])
        self.assertIn("* 2 EXPUNGE", untagged)
        m.logout()
        c.close()

    def test_index_and_scan_agree_with_a_model(self):
        m = self.daemon.imaplib()
        m.create("model")
        rng = random.Random(7)
        names = [r"\Seen", r"\Deleted", "$Claimed", "$Delayed"]
        flags = []
        for i in range(60):
            f = [n for n in names if rng.random() < 0.4]
            flags.append(set(f))
            m.append("model", "(%s)" % " ".join(f), None, b"Subject: %d\r\n\r\nx\r\n" % i)
        c = self.daemon.raw()
        c.command("SELECT model")
        keys = {r"\Seen": ("SEEN", "UNSEEN"), r"\Deleted": ("DELETED", "UNDELETED"),
                "$Claimed": ("KEYWORD $Claimed", "UNKEYWORD $Claimed"),
                "$Delayed": ("KEYWORD $Delayed", "UNKEYWORD $Delayed")}
        for trial in range(25):
            chosen = rng.sample(names, rng.randint(1, 3))
            want = {n: rng.random() < 0.5 for n in chosen}
            lo, hi = sorted(rng.sample(range(1, 61), 2))
            ranged = rng.random() < 0.4
            text = " ".join(keys[n][0 if want[n] else 1] for n in chosen)
            if ranged:
                text += " UID %d:%d" % (lo, hi)
            expect = [i + 1 for i, f in enumerate(flags)
                      if all((n in f) == want[n] for n in chosen)
                      and (not ranged or lo <= i + 1 <= hi)]
            for suffix in ["", " LARGER 0"]:  # the index, then a scan
                q = text + suffix
                self.assertEqual(numbers(c.command("UID SEARCH " + q)[0]), expect, q)
                untagged, _ = c.command("UID SEARCH RETURN (MIN COUNT) " + q, tag="r")
                line = '* ESEARCH (TAG "r") UID'
                if expect:
                    line += " MIN %d" % expect[0]
                line += " COUNT %d" % len(expect)
                self.assertEqual(untagged, [line], q)
                untagged, _ = c.command("UID SEARCH RETURN (MAX) " + q, tag="r")
                self.assertEqual(untagged, ['* ESEARCH (TAG "r") UID' +
                                            (" MAX %d" % expect[-1] if expect else "")], q)
        m.logout()
        c.close()

    def test_scan_of_a_large_mailbox_matches_the_index(self):
        # More UIDs than one scan step (IMAPQ_SEARCH_SCAN_STEP), with a hole of expunged UIDs.
        c = self.daemon.raw()
        c.command("CREATE large")
        body = b"Subject: job\r\n\r\npayload\r\n"
        n = 20000
        for start in range(0, n, 2000):
            c.send(b"".join(b"a%d APPEND large (%s) {%d+}\r\n%s\r\n" % (
                i, b"$Claimed" if i % 3 == 0 else b"", len(body), body)
                for i in range(start, start + 2000)))
            _, tagged = c.read_until("a%d" % (start + 1999))
            self.assertIn(" OK ", tagged)
        c.command("SELECT large")
        _, tagged = c.command(r"UID STORE 5000:12000 +FLAGS.SILENT (\Deleted)")
        self.assertIn(" OK ", tagged)
        c.command("EXPUNGE")
        expect = [u for u in range(1, n + 1) if (u - 1) % 3 != 0 and not 5000 <= u <= 12000]
        for keys in ["UNKEYWORD $Claimed", "UNKEYWORD $Claimed LARGER 0"]:
            self.assertEqual(numbers(c.command("UID SEARCH " + keys)[0]), expect, keys)
            untagged, _ = c.command("UID SEARCH RETURN (COUNT MIN MAX) " + keys, tag="r")
            self.assertEqual(untagged, ['* ESEARCH (TAG "r") UID MIN %d MAX %d COUNT %d' % (
                expect[0], expect[-1], len(expect))], keys)
            untagged, _ = c.command("UID SEARCH RETURN (COUNT) UID 4000:17000 " + keys,
                                    tag="r")
            self.assertEqual(untagged, ['* ESEARCH (TAG "r") UID COUNT %d' % len(
                [u for u in expect if 4000 <= u <= 17000])], keys)
        c.close()

    def test_content_search_leaves_other_sessions_free(self):
        # A search that reads every message many times over runs on the search thread: another
        # session's NOOPs are answered all along, not after it; a command pipelined behind it
        # waits for its answer.
        c = self.daemon.raw()
        c.command("CREATE heavy")
        n = 5000
        for start in range(0, n, 1000):
            c.send(b"".join(b"h%d APPEND heavy {%d+}\r\n%s\r\n" % (
                i, len(b"Subject: s\r\n\r\njob %d\r\n" % i), b"Subject: s\r\n\r\njob %d\r\n" % i)
                for i in range(start, start + 1000)))
            _, tagged = c.read_until("h%d" % (start + 999))
            self.assertIn(" OK ", tagged)
        c.command("SELECT heavy")
        m = self.daemon.imaplib()
        m.select("heavy")
        keys = " ".join('NOT BODY "absent %d"' % k for k in range(200))
        started = time.monotonic()
        c.send("s1 SEARCH %s BODY \"job 4321\"\r\ns2 NOOP\r\n" % keys)
        answer = []

        def read():
            answer.append(c.read_until("s1"))
            answer.append(time.monotonic() - started)
            answer.append(c.read_until("s2"))

        reader = threading.Thread(target=read)
        reader.start()
        waits = []
        while reader.is_alive() and len(answer) < 2:
            t = time.monotonic()
            m.noop()
            waits.append(time.monotonic() - t)
        reader.join()
        (untagged, tagged), took, (_, tagged2) = answer
        self.assertIn("s1 OK SEARCH completed", tagged)
        self.assertEqual(numbers(untagged), [4322])
        self.assertIn("s2 OK", tagged2)
        self.assertGreaterEqual(len(waits), 3, "the search took %.3f s" % took)
        self.assertLess(max(waits), took / 2, "NOOPs waited %s during a %.3f s search" % (
            sorted(waits)[-3:], took))
        m.logout()
        c.close()


if __name__ == "__main__":
    harness.main()
