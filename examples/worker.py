#!/usr/bin/env python3
"""A queue worker for imapq that speaks plain IMAP through Python's standard imaplib.

    worker.py --host 127.0.0.1 --port 1143 --user demo --password PW --queue jobs
              [--once] [--max-jobs N]

Each round it claims the lowest ready job with a conditional store, reads it, processes it and
acks it; a job that fails is released for another attempt. When the queue is empty it waits with
IDLE (or, with --once, exits). SIGTERM or Ctrl-C ends it cleanly after the job in hand.

The protocol is the one README.md describes under "Talking IMAP to imapq" and "Workers over
IMAP". Every step that changes a job is `UID STORE uid (UNCHANGEDSINCE receipt) ...`, and it took
only when the server echoed `* n FETCH (UID uid MODSEQ (m))` and the tagged OK carries no
`[MODIFIED]`; m is then the new receipt. imaplib (up to Python 3.13) neither reports response
codes nor knows IDLE, so this file reaches into two of its internals: `_simple_command()`, which
returns the tagged reply's text, and the `untagged_responses` it collects. Both have been stable
since Python 3.0.
"""
import argparse
import imaplib
import os
import re
import select
import signal
import sys

# Searches for the lowest job that nobody holds, that is not delayed and not being deleted.
READY = "RETURN (MIN) UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED"
# Flags that mean the search answer was already stale when we fetched the job.
BUSY = {"$Claimed", "$Delayed", "\\Deleted"}
# Seconds one IDLE lasts before the worker searches again (servers drop idlers after 30 min).
IDLE_SECONDS = 300

# imaplib refuses command names it does not know; GETMETADATA is RFC 5464's.
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))


class Worker:
    """One IMAP connection with the queue selected and CONDSTORE enabled."""

    def __init__(self, args):
        self.queue = args.queue
        self.stopping = False
        self.imap = imaplib.IMAP4(args.host, args.port)
        self.imap.login(args.user, args.password)
        self.command("ENABLE", "CONDSTORE")  # MODSEQ in FETCH, UNCHANGEDSINCE in STORE
        typ, data = self.imap.select(quote(self.queue))
        if typ != "OK":
            raise imaplib.IMAP4.error("SELECT %s: %s" % (self.queue, data))
        # A signal writes a byte to this pipe, which wakes the select() in idle().
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def on_signal(self, signum, frame):
        """Asks the loop to stop; the job in hand, if any, is finished first."""
        self.stopping = True

    def command(self, *words):
        """Runs one command: (tagged text, {type: [untagged data]}). Raises unless it is OK."""
        self.imap.untagged_responses.clear()
        typ, data = self.imap._simple_command(*words)
        if typ != "OK":
            raise imaplib.IMAP4.error("%s: %s %s" % (words[0], typ, data))
        text = data[-1].decode() if data and data[-1] else ""
        return text, dict(self.imap.untagged_responses)

    def conditional_store(self, uid, since, change):
        """A UID STORE with UNCHANGEDSINCE: the new receipt, or None when it did not take."""
        text, untagged = self.command("UID", "STORE", str(uid),
                                      "(UNCHANGEDSINCE %d)" % since, change)
        if text.startswith("[MODIFIED"):
            return None  # the job changed since `since`: someone else holds it now
        for line in untagged.get("FETCH", []):
            m = re.search(rb"\(UID %d MODSEQ \((\d+)\)\)" % uid, fetch_text(line))
            if m:
                return int(m.group(1))
        return None  # no echo: the job is gone (acked elsewhere or dead-lettered)

    def claim(self):
        """Claims the lowest ready job: (uid, receipt), or (None, None) when none is ready."""
        while True:
            _, untagged = self.command("UID", "SEARCH", READY)
            found = [re.search(rb"UID MIN (\d+)", line) for line in untagged.get("ESEARCH", [])]
            found = [m for m in found if m]
            if not found:
                return None, None
            uid = int(found[0].group(1))
            # Read the job's flags and mod-sequence: the base for the conditional claim.
            _, untagged = self.command("UID", "FETCH", str(uid), "(FLAGS MODSEQ)")
            flags, modseq = None, None
            for line in untagged.get("FETCH", []):
                m = re.search(rb"UID %d FLAGS \(([^)]*)\) MODSEQ \((\d+)\)" % uid,
                              fetch_text(line))
                if m:
                    flags, modseq = m.group(1).decode().split(), int(m.group(2))
            if modseq is None or BUSY & set(flags):
                continue  # gone or taken since the search: look again
            receipt = self.conditional_store(uid, modseq, "+FLAGS.SILENT ($Claimed)")
            if receipt is not None:
                return uid, receipt
            # Another worker won this job; the next search will not offer it again.

    def read(self, uid):
        """The job's body (without the mail header) and how many times it has been claimed."""
        _, untagged = self.command(
            "UID", "FETCH", str(uid),
            "(ANNOTATION (/vendor/imapq/attempts value.shared) BODY.PEEK[TEXT])")
        body, attempts = b"", 0
        for item in untagged.get("FETCH", []):
            if isinstance(item, tuple):  # (text before the literal, the literal)
                m = re.search(rb'attempts \(value\.shared "(\d+)"\)', item[0])
                if m and b"UID %d " % uid in item[0]:
                    body, attempts = item[1], int(m.group(1))
        return body.decode("utf-8", "replace"), attempts

    def idle(self):
        """Waits with IDLE until the queue changes, IDLE_SECONDS pass or a signal arrives."""
        tag = self.imap._new_tag()
        self.imap.untagged_responses.clear()
        self.imap.send(tag + b" IDLE\r\n")
        # The server reports changes it holds back before its "+ idling"; None is that "+".
        while self.imap._get_response() is not None:
            pass
        woke = "EXISTS" in self.imap.untagged_responses
        while not woke and not self.stopping:
            # imaplib reads through a buffer: look there before waiting on the socket.
            if not self.buffered():
                ready, _, _ = select.select([self.imap.sock, self.wake_r], [], [], IDLE_SECONDS)
                if self.wake_r in ready:
                    os.read(self.wake_r, 64)
                    continue  # a signal: the loop test sees self.stopping
                if not ready:
                    break  # timed out: search again, then idle anew
            self.imap._get_response()
            # A new job (EXISTS) or a job released or whose delay ended (FETCH).
            woke = bool({"EXISTS", "FETCH"} & set(self.imap.untagged_responses))
        self.imap.send(b"DONE\r\n")
        self.imap._get_tagged_response(tag)

    def buffered(self):
        """True when imaplib's buffer holds bytes not read yet (checked without blocking)."""
        self.imap.sock.setblocking(False)
        try:
            return bool(self.imap.file.peek(1))
        finally:
            self.imap.sock.setblocking(True)

    def process(self, uid, body):
        """The job itself: prints it; a body with the word "fail" stands for a failing job."""
        print("job %d: %s" % (uid, body.strip()), flush=True)
        return re.search(r"\bfail\b", body) is None

    def handle(self, uid, receipt):
        """Reads, processes and acks or releases one claimed job."""
        body, attempts = self.read(uid)
        if self.process(uid, body):
            # Ack: a conditional \Deleted against the receipt, then expunge only this job.
            if self.conditional_store(uid, receipt, "+FLAGS.SILENT (\\Deleted)") is None:
                print("job %d: lost before the ack (lease expired)" % uid, flush=True)
                return
            self.command("UID", "EXPUNGE", str(uid))
            print("job %d: acked" % uid, flush=True)
        else:
            # Release: the job is ready again at once for another attempt; after its last
            # attempt (the queue's max-attempts) the server moves it to "<queue>/dead".
            self.conditional_store(uid, receipt, "-FLAGS.SILENT ($Claimed)")
            print("job %d: failed, released after attempt %d" % (uid, attempts), flush=True)

    def run(self, once, max_jobs):
        done = 0
        while not self.stopping and (max_jobs is None or done < max_jobs):
            uid, receipt = self.claim()
            if uid is not None:
                self.handle(uid, receipt)
                done += 1
            elif once:
                break
            else:
                self.idle()
        self.imap.logout()
        return done


def quote(name):
    """An IMAP quoted string for a mailbox name."""
    return '"%s"' % name.replace("\\", "\\\\").replace('"', '\\"')


def fetch_text(item):
    """The text of an untagged response imaplib collected (literals arrive as tuples)."""
    return item[0] if isinstance(item, tuple) else item


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1143)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--once", action="store_true", help="exit when the queue is empty")
    p.add_argument("--max-jobs", type=int, metavar="N", help="exit after handling N jobs")
    args = p.parse_args()
    done = Worker(args).run(args.once, args.max_jobs)
    print("handled %d job%s" % (done, "" if done == 1 else "s"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
