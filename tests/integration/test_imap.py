"""The IMAP server driven by Python's imaplib (an independent client) and by raw transcripts:
commands in every state, the CONDSTORE claim race, QRESYNC, IDLE, and restarts."""
import imaplib
import re
import threading
import time
import unittest

import harness

MESSAGE = (b"From: Producer <p@example.com>\r\nTo: q@example.com\r\nSubject: job %d\r\n"
           b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@example.com>\r\n\r\n"
           b"payload %d\r\n")


def message(i):
    return MESSAGE % (i, i, i)


def modseq_in(lines, prefix="* "):
    """The MODSEQ of the first FETCH line among lines that starts with prefix."""
    for line in lines:
        m = re.search(r"FETCH \(.*MODSEQ \((\d+)\)", line)
        if line.startswith(prefix) and m:
            return int(m.group(1))
    raise AssertionError("no MODSEQ in %r" % (lines,))


class ImapTestCase(harness.DaemonTestCase):
    def fresh_mailbox(self, name):
        m = self.daemon.imaplib()
        typ, _ = m.create(name)
        self.assertEqual(typ, "OK")
        return m


class Basics(ImapTestCase):
    def test_greeting_and_capabilities(self):
        c = self.daemon.raw(login=False)
        self.assertTrue(c.greeting.startswith("* OK [CAPABILITY IMAP4rev1"), c.greeting)
        untagged, tagged = c.command("CAPABILITY")
        caps = untagged[0].split()
        for cap in ["IMAP4rev1", "LITERAL+", "SASL-IR", "ENABLE", "IDLE", "NAMESPACE",
                    "UNSELECT", "UIDPLUS", "ESEARCH", "MOVE", "CONDSTORE", "QRESYNC", "ID",
                    "AUTH=PLAIN"]:
            self.assertIn(cap, caps)
        self.assertTrue(any(c.startswith("APPENDLIMIT=") for c in caps))
        self.assertIn("OK", tagged)
        c.close()

    def test_commands_need_login(self):
        c = self.daemon.raw(login=False)
        _, tagged = c.command("SELECT INBOX")
        self.assertIn("BAD", tagged)
        _, tagged = c.command("LOGIN demo wrong-password")
        self.assertIn("NO [AUTHENTICATIONFAILED]", tagged)
        _, tagged = c.command("NOSUCHCOMMAND")
        self.assertIn("BAD", tagged)
        c.close()

    def test_authenticate_plain_with_and_without_initial_response(self):
        import base64
        user, password, _ = self.daemon.credentials()
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        c = self.daemon.raw(login=False)
        _, tagged = c.command("AUTHENTICATE PLAIN " + token)
        self.assertIn("OK", tagged)
        c.close()
        c = self.daemon.raw(login=False)
        c.send("a1 AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.readline().startswith("+"))
        c.send(token + "\r\n")
        _, tagged = c.read_until("a1")
        self.assertIn("OK", tagged)
        c.close()
        m = imaplib.IMAP4("127.0.0.1", self.daemon.ports["imap"])
        m.authenticate("PLAIN", lambda _: b"\0" + user.encode() + b"\0" + password.encode())
        self.assertEqual(m.state, "AUTH")
        m.logout()

    def test_mailbox_commands(self):
        m = self.daemon.imaplib()
        self.assertEqual(m.create("work/jobs")[0], "OK")
        self.assertEqual(m.create("work/jobs")[0], "NO")
        typ, data = m.list('""', "work/*")
        self.assertEqual(typ, "OK")
        self.assertIn(b'() "/" work/jobs', data)
        typ, data = m.list('""', "%")
        self.assertTrue(any(b"\\Noselect" in d and d.endswith(b" work") for d in data), data)
        self.assertEqual(m.rename("work/jobs", "work/done")[0], "OK")
        self.assertEqual(m.select("work/jobs")[0], "NO")
        self.assertEqual(m.select("work/done")[0], "OK")
        self.assertEqual(m.subscribe("work/done")[0], "OK")
        typ, data = m.lsub('""', "*")
        self.assertIn(b'() "/" work/done', data)
        typ, data = m.status("work/done", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)")
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0].decode(), r"MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+ UNSEEN 0 "
                                           r"HIGHESTMODSEQ \d+")
        self.assertEqual(m.delete("work/done")[0], "OK")
        self.assertEqual(m.delete("INBOX")[0], "NO")
        self.assertEqual(m.delete("no/such")[0], "NO")
        self.assertEqual(m.create("bad//name")[0], "NO")
        typ, data = m.namespace()
        self.assertEqual(data[0], b'(("" "/")) NIL NIL')
        m.logout()

    def test_append_fetch_store_expunge(self):
        m = self.fresh_mailbox("basics")
        typ, data = m.append("basics", r"(\Flagged $Job)", imaplib.Time2Internaldate(0),
                             message(1))
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0].decode(), r"\[APPENDUID \d+ 1\]")
        m.append("basics", None, None, message(2))
        typ, data = m.select("basics")
        self.assertEqual(data[0], b"2")
        typ, data = m.fetch("1", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
        text = data[0].decode()
        self.assertIn("UID 1", text)
        self.assertIn("\\Flagged", text)
        self.assertIn("$Job", text)
        self.assertIn('INTERNALDATE "01-Jan-1970 00:00:00 +0000"', text)
        self.assertIn("RFC822.SIZE %d" % len(message(1)), text)
        typ, data = m.fetch("2", "(BODY.PEEK[])")
        self.assertEqual(data[0][1], message(2))
        typ, data = m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(data[0][1], b"Subject: job 2\r\n\r\n")
        typ, data = m.fetch("2", "(BODY[TEXT]<0.7>)")
        self.assertEqual(data[0][1], b"payload")
        typ, data = m.fetch("2", "(FLAGS)")
        self.assertIn(b"\\Seen", data[0])  # BODY[] without PEEK sets \Seen
        typ, data = m.fetch("1", "(ENVELOPE)")
        self.assertIn(b'"job 1"', data[0])
        self.assertIn(b'(("Producer" NIL "p" "example.com"))', data[0])
        typ, data = m.fetch("1", "(BODYSTRUCTURE)")
        self.assertIn(b'("TEXT" "PLAIN"', data[0].upper())
        typ, data = m.store("1", "+FLAGS", r"(\Deleted)")
        self.assertIn(b"\\Deleted", data[0])
        typ, data = m.expunge()
        self.assertEqual(data, [b"1"])
        typ, data = m.fetch("1", "(UID)")
        self.assertIn(b"UID 2", data[0])
        with self.assertRaises(imaplib.IMAP4.error):
            m.store("1", "+FLAGS", r"(\Recent)")
        with self.assertRaises(imaplib.IMAP4.error):
            m.fetch("7", "(UID)")
        m.logout()

    def test_copy_and_move_report_copyuid(self):
        m = self.fresh_mailbox("src")
        m.create("dst")
        for i in range(3):
            m.append("src", None, None, message(i))
        m.select("src")
        self.assertEqual(m.uid("COPY", "1:2", "dst")[0], "OK")
        c = self.daemon.raw()
        c.command("SELECT src")
        _, tagged = c.command("UID COPY 1:2 dst")
        self.assertRegex(tagged, r"OK \[COPYUID \d+ 1:2 3:4\]")
        untagged, tagged = c.command("UID MOVE 3 dst")
        self.assertIn("OK", tagged)
        self.assertTrue(any(re.match(r"\* OK \[COPYUID \d+ 3 5\]", u) for u in untagged), untagged)
        self.assertIn("* 3 EXPUNGE", untagged)
        _, tagged = c.command("COPY 1 nosuch")
        self.assertIn("NO [TRYCREATE]", tagged)
        c.close()
        self.assertEqual(m.status("dst", "(MESSAGES)")[1][0], b'dst (MESSAGES 5)')
        m.logout()

    def test_literals_and_literal_plus(self):
        c = self.daemon.raw()
        body = message(9)
        c.send(b"a1 APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
        _, tagged = c.read_until("a1")
        self.assertIn("OK [APPENDUID", tagged)
        c.send(b"a2 APPEND INBOX {%d}\r\n" % len(body))
        self.assertTrue(c.readline().startswith("+"))
        c.send(body + b"\r\n")
        _, tagged = c.read_until("a2")
        self.assertIn("OK [APPENDUID", tagged)
        # A literal over APPENDLIMIT is refused before the continuation.
        c.send(b"a3 APPEND INBOX {999999999999}\r\n")
        _, tagged = c.read_until("a3")
        self.assertIn("NO", tagged)
        _, tagged = c.command("NOOP")
        self.assertIn("OK", tagged)
        c.close()

    def test_large_append_streams_to_disk(self):
        c = self.daemon.raw()
        body = b"Subject: big\r\n\r\n" + b"x" * (3 * 1024 * 1024) + b"\r\n"
        c.command("CREATE big")
        c.send(b"a1 APPEND big {%d+}\r\n" % len(body) + body + b"\r\n")
        _, tagged = c.read_until("a1")
        self.assertIn("OK", tagged)
        c.command("SELECT big")
        untagged, tagged = c.command("FETCH 1 (BODY.PEEK[])")
        self.assertIn("OK", tagged)
        self.assertTrue(untagged[0].endswith(body.decode() + ")"))
        c.close()

    def test_id_enable_unselect_close(self):
        c = self.daemon.raw()
        untagged, tagged = c.command('ID ("name" "test")')
        self.assertTrue(untagged[0].startswith('* ID ('))
        untagged, _ = c.command("ENABLE CONDSTORE QRESYNC")
        self.assertEqual(untagged, ["* ENABLED CONDSTORE QRESYNC"])
        c.command("SELECT INBOX")
        _, tagged = c.command("UNSELECT")
        self.assertIn("OK", tagged)
        _, tagged = c.command("CLOSE")
        self.assertIn("BAD", tagged)
        untagged, tagged = c.command("LOGOUT")
        self.assertTrue(untagged[0].startswith("* BYE"))
        c.close()


class Claims(ImapTestCase):
    def claim(self, c, uid, modseq):
        """One conditional claim; True when this connection won."""
        untagged, tagged = c.command(
            "UID STORE %d (UNCHANGEDSINCE %d) +FLAGS.SILENT ($Claimed)" % (uid, modseq))
        self.assertIn(" OK ", tagged)
        won = "[MODIFIED" not in tagged
        echoed = any(re.search(r"FETCH \(UID %d MODSEQ \(\d+\)\)" % uid, u) for u in untagged)
        self.assertEqual(won, echoed, (untagged, tagged))
        return won

    def test_eight_connections_race_one_claim(self):
        setup = self.fresh_mailbox("race")
        workers = [self.daemon.raw() for _ in range(8)]
        for w in workers:
            w.command("SELECT race")
        for rnd in range(25):
            setup.append("race", None, None, message(rnd))
            for w in workers:
                w.command("NOOP")
            untagged, _ = workers[0].command("UID SEARCH UNKEYWORD $Claimed")
            uid = int(untagged[0].split()[-1])
            untagged, _ = workers[0].command("UID FETCH %d (FLAGS MODSEQ)" % uid)
            modseq = modseq_in(untagged)
            barrier = threading.Barrier(8)
            results = [None] * 8

            def run(i):
                barrier.wait()
                results[i] = self.claim(workers[i], uid, modseq)
            threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(results.count(True), 1, results)
        for w in workers:
            w.close()
        setup.logout()

    def test_worker_protocol_claim_ack(self):
        setup = self.fresh_mailbox("proto")
        setup.append("proto", None, None, message(1))
        c = self.daemon.raw()
        c.command("ENABLE CONDSTORE")
        c.command("SELECT proto")
        untagged, _ = c.command("UID SEARCH RETURN (MIN) UNKEYWORD $Claimed UNKEYWORD $Delayed "
                                "UNDELETED")
        uid = int(re.search(r"MIN (\d+)", untagged[0]).group(1))
        untagged, _ = c.command("UID FETCH %d (FLAGS MODSEQ)" % uid)
        modseq = modseq_in(untagged)
        untagged, tagged = c.command(
            "UID STORE %d (UNCHANGEDSINCE %d) +FLAGS.SILENT ($Claimed)" % (uid, modseq))
        receipt = modseq_in(untagged)
        self.assertGreater(receipt, modseq)
        # A stale receipt cannot ack.
        untagged, tagged = c.command(
            "UID STORE %d (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)" % (uid, modseq))
        self.assertIn("[MODIFIED %d]" % uid, tagged)
        # The receipt acks.
        untagged, tagged = c.command(
            "UID STORE %d (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)" % (uid, receipt))
        self.assertNotIn("MODIFIED", tagged)
        untagged, tagged = c.command("UID EXPUNGE %d" % uid)
        self.assertIn("* 1 EXPUNGE", untagged)
        untagged, _ = c.command("UID SEARCH RETURN (MIN) UNKEYWORD $Claimed")
        self.assertEqual(len(untagged), 1)
        self.assertRegex(untagged[0], r'^\* ESEARCH \(TAG "t\d+"\) UID$')
        c.close()
        setup.logout()

    def test_unchangedsince_zero_and_noop_stores_fail(self):
        setup = self.fresh_mailbox("exact")
        setup.append("exact", r"($Claimed)", None, message(1))
        c = self.daemon.raw()
        c.command("SELECT exact")
        _, tagged = c.command("UID STORE 1 (UNCHANGEDSINCE 0) +FLAGS.SILENT ($Claimed)")
        self.assertIn("[MODIFIED 1]", tagged)
        untagged, _ = c.command("UID FETCH 1 (MODSEQ)")
        modseq = modseq_in(untagged)
        # Passing the test but changing nothing gives no echo, so no worker thinks it won.
        untagged, tagged = c.command(
            "UID STORE 1 (UNCHANGEDSINCE %d) +FLAGS.SILENT ($Claimed)" % modseq)
        self.assertNotIn("MODIFIED", tagged)
        self.assertFalse(any("FETCH" in u for u in untagged), untagged)
        _, tagged = c.command(
            "UID STORE 1 (UNCHANGEDSINCE %d) +FLAGS.SILENT ($Claimed)" % (modseq - 1))
        self.assertIn("[MODIFIED 1]", tagged)
        c.close()
        setup.logout()


class Sync(ImapTestCase):
    def test_other_sessions_see_changes(self):
        setup = self.fresh_mailbox("shared")
        a, b = self.daemon.raw(), self.daemon.raw()
        a.command("ENABLE CONDSTORE")
        a.command("SELECT shared")
        b.command("SELECT shared")
        setup.append("shared", None, None, message(1))
        untagged, _ = a.command("NOOP")
        self.assertIn("* 1 EXISTS", untagged)
        b.command("NOOP")
        b.command("STORE 1 +FLAGS (\\Flagged)")
        untagged, _ = a.command("NOOP")
        self.assertTrue(any(re.match(r"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged( \\Recent)?\) "
                                     r"MODSEQ \(\d+\)\)", u)
                            for u in untagged), untagged)
        b.command("STORE 1 +FLAGS (\\Deleted)")
        b.command("EXPUNGE")
        # No EXPUNGE while a FETCH runs (RFC 3501 7.4.1); it comes with the next NOOP.
        untagged, _ = a.command("FETCH 1 (FLAGS)")
        self.assertNotIn("* 1 EXPUNGE", untagged)
        untagged, _ = a.command("NOOP")
        self.assertIn("* 1 EXPUNGE", untagged)
        a.close()
        b.close()
        setup.logout()

    def test_qresync_after_another_sessions_expunges(self):
        setup = self.fresh_mailbox("resync")
        for i in range(6):
            setup.append("resync", None, None, message(i))
        a = self.daemon.raw()
        a.command("ENABLE QRESYNC")
        untagged, _ = a.command("SELECT resync")
        uidvalidity = int(re.search(r"UIDVALIDITY (\d+)", " ".join(untagged)).group(1))
        modseq = int(re.search(r"HIGHESTMODSEQ (\d+)", " ".join(untagged)).group(1))
        a.close()
        b = self.daemon.raw()
        b.command("SELECT resync")
        b.command("UID STORE 2,4 +FLAGS.SILENT (\\Deleted)")
        b.command("UID EXPUNGE 2,4")
        b.command("UID STORE 5 +FLAGS.SILENT (\\Flagged)")
        b.close()
        a = self.daemon.raw()
        a.command("ENABLE QRESYNC")
        untagged, tagged = a.command("SELECT resync (QRESYNC (%d %d))" % (uidvalidity, modseq))
        self.assertIn("OK [READ-WRITE]", tagged)
        self.assertIn("* VANISHED (EARLIER) 2,4", untagged)
        self.assertTrue(any(re.match(r"\* 3 FETCH \(UID 5 FLAGS \(\\Flagged\) MODSEQ", u)
                            for u in untagged), untagged)
        # With QRESYNC enabled, expunges arrive as VANISHED.
        setup.select("resync")
        setup.store("1", "+FLAGS", "(\\Deleted)")
        setup.expunge()
        untagged, _ = a.command("NOOP")
        self.assertIn("* VANISHED 1", untagged)
        untagged, _ = a.command("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
        self.assertIn("* VANISHED (EARLIER) 1:2,4", untagged)
        a.close()
        setup.logout()

    def test_expunges_before_select_are_not_reported_again(self):
        """Acks expunge one job at a time, neighbours of earlier expunges: a session selected
        after some of them hears of exactly the later ones, with the right numbers."""
        setup = self.fresh_mailbox("acks")
        for i in range(10):
            setup.append("acks", None, None, message(i))
        setup.select("acks")
        setup.uid("STORE", "1:5", "+FLAGS.SILENT", "(\\Deleted)")
        setup.expunge()
        plain = self.daemon.raw()
        untagged, _ = plain.command("SELECT acks")
        self.assertIn("* 5 EXISTS", untagged)
        resync = self.daemon.raw()
        resync.command("ENABLE QRESYNC")
        resync.command("SELECT acks")
        for uid in (6, 7):
            setup.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
            setup.uid("EXPUNGE", str(uid))
        untagged, _ = plain.command("NOOP")
        self.assertEqual([u for u in untagged if "EXPUNGE" in u],
                         ["* 2 EXPUNGE", "* 1 EXPUNGE"])
        untagged, _ = resync.command("NOOP")
        self.assertEqual([u for u in untagged if "VANISHED" in u], ["* VANISHED 6:7"])
        untagged, _ = plain.command("UID STORE 8 +FLAGS.SILENT (\\Deleted)")
        untagged, _ = plain.command("UID EXPUNGE 8")
        self.assertEqual(untagged, ["* 1 EXPUNGE"])
        untagged, _ = plain.command("FETCH 1:* (UID)")
        self.assertEqual(len(untagged), 2)
        plain.close()
        resync.close()
        setup.logout()

    def test_idle_wakes_within_a_second(self):
        setup = self.fresh_mailbox("idle")
        c = self.daemon.raw()
        c.command("SELECT idle")
        c.send("i1 IDLE\r\n")
        self.assertTrue(c.readline().startswith("+"))
        start = time.monotonic()
        setup.append("idle", None, None, message(1))
        line = c.readline()
        elapsed = time.monotonic() - start
        self.assertEqual(line, "* 1 EXISTS")
        self.assertLess(elapsed, 1.0)
        c.readline()  # RECENT
        c.send("DONE\r\n")
        _, tagged = c.read_until("i1")
        self.assertIn("OK", tagged)
        c.close()
        setup.logout()


class Connections(ImapTestCase):
    def test_two_thousand_connections_on_one_loop(self):
        import resource
        import socket
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 2000
        if soft < want + 100:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want + 200), hard))
        socks = []
        try:
            for _ in range(want):
                s = socket.create_connection(("127.0.0.1", self.daemon.ports["imap"]))
                socks.append(s)
            for s in socks:
                s.settimeout(10)
                self.assertTrue(s.recv(4096).startswith(b"* OK"))
            # Every connection is served: a command on the first and the last.
            for s in (socks[0], socks[-1]):
                s.sendall(b"a1 NOOP\r\n")
                self.assertIn(b"a1 OK", s.recv(4096))
        finally:
            for s in socks:
                s.close()


class Restart(unittest.TestCase):
    def test_state_survives_restart_and_kill(self):
        d = harness.Daemon().start()
        self.addCleanup(d.cleanup)
        m = d.imaplib()
        m.create("keep")
        for i in range(5):
            m.append("keep", r"(\Seen $K%d)" % i, None, message(i))
        m.select("keep")
        m.store("2", "+FLAGS", "(\\Deleted)")
        m.expunge()
        before = m.status("keep", "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")[1][0]
        flags_before = m.fetch("1:*", "(UID FLAGS MODSEQ)")[1]
        m.logout()
        for stop in (d.stop, d.kill):
            stop()
            d.start()
            m = d.imaplib()
            self.assertEqual(m.status("keep", "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")[1][0],
                             before)
            m.select("keep")
            self.assertEqual(m.fetch("1:*", "(UID FLAGS MODSEQ)")[1], flags_before)
            self.assertEqual(m.fetch("4", "(BODY.PEEK[])")[1][0][1], message(4))
            m.logout()
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    harness.main()
