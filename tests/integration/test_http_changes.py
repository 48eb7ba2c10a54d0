"""The change feed GET /v1/queues/{q}/changes against a real imapqd: pages bounded by `limit`,
in ascending mod-sequence order, chained by `next` and `more` so that a client following them
sees every change once, with removed ids paged alike."""
import json

import harness

JOBS = 2500


def uids(sequence_set):
    """The ids of an IMAP sequence set such as "1:3,5" as a list."""
    out = []
    for part in filter(None, sequence_set.split(",")):
        lo, _, hi = part.partition(":")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


class ChangeFeed(harness.ApiTestCase):
    counter = 0

    def make_queue(self, jobs):
        """A fresh queue holding jobs ready jobs; returns its name."""
        type(self).counter += 1
        q = "feed%d" % self.counter
        status, body = self.http("PUT", "/v1/queues/" + q)
        self.assertEqual(status, 201, body)
        for start in range(0, jobs, 1000):
            batch = [{"body": {"n": i}} for i in range(start, min(jobs, start + 1000))]
            status, body = self.http("POST", "/v1/queues/%s/messages" % q,
                                        {"messages": batch})
            self.assertEqual(status, 201, body)
        return q

    def claim(self, q, n):
        status, body = self.http("POST", "/v1/queues/%s/claims" % q, {"max": n})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["messages"]), n)
        return body["messages"]

    def settle(self, q, job, verb):
        status, body = self.http("POST", "/v1/queues/%s/messages/%s/%s" % (q, job["id"], verb),
                                    {"receipt": job["receipt"]})
        self.assertEqual(status, 204, body)

    def page(self, q, since, limit=None):
        path = "/v1/queues/%s/changes?since=%s" % (q, since)
        if limit is not None:
            path += "&limit=%d" % limit
        status, body = self.http("GET", path)
        self.assertEqual(status, 200, body)
        for key in ("highestmodseq", "next"):
            self.assertIsInstance(body[key], str)
        self.assertIsInstance(body["more"], bool)
        self.assertIsInstance(body["removed"], str)
        return body

    def walk(self, q, limit, since="0"):
        """Every page from since to the end: (pages, their sizes as compact JSON)."""
        pages, sizes = [], []
        while True:
            body = self.page(q, since, limit)
            pages.append(body)
            sizes.append(len(json.dumps(body, separators=(",", ":"))))
            self.assertLessEqual(len(body["changed"]), limit)
            if body["more"]:
                self.assertEqual(len(body["changed"]), limit)
                self.assertEqual(body["next"], body["changed"][-1]["modseq"])
            else:
                self.assertGreaterEqual(int(body["next"]), int(body["highestmodseq"]))
                break
            self.assertGreater(int(body["next"]), int(since))
            since = body["next"]
            self.assertLess(len(pages), 10000, "the feed does not end")
        return pages, sizes

    def check_walk(self, pages, current, removed):
        """The pages hold each current job once, in mod-sequence order, and each removed id once."""
        changed = [job for p in pages for job in p["changed"]]
        modseqs = [int(job["modseq"]) for job in changed]
        self.assertEqual(modseqs, sorted(modseqs))
        self.assertEqual(len(set(modseqs)), len(modseqs))
        ids = [job["id"] for job in changed]
        self.assertEqual(len(ids), len(set(ids)), "a job was reported twice")
        self.assertEqual({job["id"]: (job["modseq"], job["state"]) for job in changed}, current)
        gone = [uid for p in pages for uid in uids(p["removed"])]
        self.assertEqual(len(gone), len(set(gone)), "an id was reported removed twice")
        self.assertEqual(set(gone), removed)
        self.assertEqual([p["more"] for p in pages], [True] * (len(pages) - 1) + [False])

    def test_pages_cover_every_change_once(self):
        q = self.make_queue(JOBS)
        held = self.claim(q, 6)
        for job in held[:3]:
            self.settle(q, job, "ack")
        self.settle(q, held[3], "nack")
        acked = {int(job["id"]) for job in held[:3]}

        pages, sizes = self.walk(q, 1000)
        self.assertEqual(len(pages), 3)
        changed = [job for p in pages for job in p["changed"]]
        current = {job["id"]: (job["modseq"], job["state"]) for job in changed}
        self.assertEqual(len(current), JOBS - 3)
        self.assertEqual(current[held[4]["id"]], (held[4]["modseq"], "claimed"))
        self.assertEqual(current[held[3]["id"]][1], "ready")
        # The changed jobs (claimed, released) come last: the order is by mod-sequence, not id.
        self.assertEqual({job["id"] for job in changed[-3:]},
                         {job["id"] for job in held[3:]})
        self.check_walk(pages, current, acked)

        small, small_sizes = self.walk(q, 7)
        self.assertEqual(len(small), -(-(JOBS - 3) // 7))
        self.check_walk(small, current, acked)
        # One page's reply is bounded by its limit, whatever the queue holds.
        self.assertLess(max(small_sizes), 7 * 400 + 400)
        self.assertLess(max(sizes), 1000 * 400 + 400)

        # The default page is 100 changes.
        first = self.page(q, 0)
        self.assertEqual(len(first["changed"]), 100)
        self.assertTrue(first["more"])
        self.assertEqual(first["changed"], [job for p in small for job in p["changed"]][:100])
        self.assertEqual(first["next"], first["changed"][-1]["modseq"])

        # Caught up: nothing new, next stays where it is.
        last = small[-1]
        again = self.page(q, last["next"], 7)
        self.assertEqual((again["changed"], again["removed"], again["more"], again["next"]),
                         ([], "", False, last["next"]))

    def test_changes_between_pages_are_not_missed(self):
        q = self.make_queue(300)
        view = {}  # what a client following the feed believes: id -> (modseq, state)
        since, turn = "0", 0
        while True:
            body = self.page(q, since, 7)
            for job in body["changed"]:
                view[job["id"]] = (job["modseq"], job["state"])
            for uid in uids(body["removed"]):
                view.pop(str(uid), None)
            since = body["next"]
            if not body["more"]:
                break
            # Between pages, jobs already reported and jobs not reported yet change and go.
            turn += 1
            if turn % 5 == 0:
                for job in self.claim(q, 2):
                    self.settle(q, job, "ack" if turn % 10 == 0 else "nack")
            if turn % 7 == 0:
                status, _ = self.http("POST", "/v1/queues/%s/messages" % q, {"late": turn})
                self.assertEqual(status, 201)
        full, _ = self.walk(q, 1000)
        truth = {job["id"]: (job["modseq"], job["state"]) for p in full for job in p["changed"]}
        self.assertEqual(view, truth)

    def test_removed_jobs_page_once(self):
        q = self.make_queue(40)
        jobs = self.claim(q, 20)
        for job in jobs[::2]:
            self.settle(q, job, "ack")
        acked = {int(job["id"]) for job in jobs[::2]}
        start = self.page(q, 0, 1000)
        current = {job["id"]: (job["modseq"], job["state"]) for job in start["changed"]}
        pages, _ = self.walk(q, 3)
        self.check_walk(pages, current, acked)
        # Removals after the changes of a page are left to the pages after it.
        for p in pages:
            if p["more"]:
                for uid in uids(p["removed"]):
                    self.assertIn(uid, acked)

    def test_limit_is_validated(self):
        q = self.make_queue(1)
        for bad in ("0", "1001", "abc", "-1", "", "1e3", "99999999999999999999"):
            status, body = self.http("GET", "/v1/queues/%s/changes?since=0&limit=%s" % (q, bad))
            self.assertEqual(status, 400, (bad, body))
            self.assertEqual(body["error"]["code"], "invalid", bad)
            self.assertIn("limit", body["error"]["message"])
        status, body = self.http("GET", "/v1/queues/%s/changes?since=x&limit=5" % q)
        self.assertEqual(status, 400, body)
        for good in ("1", "1000"):
            body = self.page(q, 0, int(good))
            self.assertEqual(len(body["changed"]), 1)
            self.assertFalse(body["more"])
        status, body = self.http("GET", "/v1/queues/nosuch/changes?limit=5")
        self.assertEqual(status, 404, body)


if __name__ == "__main__":
    harness.main()
