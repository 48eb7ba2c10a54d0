/* The event loop: epoll readiness for file descriptors, one-shot timers on a min-heap, hooks run
 * before each poll (where group commit and reply flushing happen), and a thread-safe way for other
 * threads (the journal's flusher, HTTP workers) to run a function on the loop thread.
 *
 * Everything but loop_post() and loop_stop() must be called on the loop's own thread. Watchers and
 * timers may be added and removed from inside callbacks. */
#ifndef IMAPQ_LOOP_H
#define IMAPQ_LOOP_H

#include <stdint.h>

#include "imap/base/error.h"

enum loop_events {
	LOOP_READ = 1u << 0,
	LOOP_WRITE = 1u << 1,
	LOOP_HANGUP = 1u << 2, /* error or hang-up; delivered whatever was asked for */
};

struct loop;
struct loop_io;
struct loop_timer;

typedef void loop_io_fn(void *arg, unsigned events);
typedef void loop_fn(void *arg);

imapq_err loop_create(struct loop **loop_r);
/* Frees the loop; watchers and timers still registered are freed with it. */
void loop_destroy(struct loop **loop);

/* Dispatches events until loop_stop(); returns IMAPQ_OK, or IMAPQ_E_IO when epoll fails. */
imapq_err loop_run(struct loop *loop);
/* Makes loop_run() return after the current round; safe from any thread and signal handlers. */
void loop_stop(struct loop *loop);

/* Watches fd for events (a LOOP_READ / LOOP_WRITE mask; 0 pauses the watcher). */
imapq_err loop_io_add(struct loop *loop, int fd, unsigned events, loop_io_fn *fn, void *arg,
		      struct loop_io **io_r);
imapq_err loop_io_set(struct loop_io *io, unsigned events);
/* Stops watching; the fd is not closed. Safe inside any callback. *io becomes NULL. */
void loop_io_remove(struct loop_io **io);

/* Calls fn once after delay_ms milliseconds. The timer is freed before fn runs, so fn must
 * forget any pointer to it; timer_r may be NULL when the timer is never cancelled. */
imapq_err loop_timer_add(struct loop *loop, uint64_t delay_ms, loop_fn *fn, void *arg,
			 struct loop_timer **timer_r);
/* Cancels a pending timer (NULL is fine); *timer becomes NULL. */
void loop_timer_cancel(struct loop_timer **timer);

/* Adds a hook run on every round just before the loop sleeps. */
imapq_err loop_before_poll(struct loop *loop, loop_fn *fn, void *arg);

/* Runs fn(arg) on the loop thread soon; safe from any thread. IMAPQ_E_NOMEM when it cannot. */
imapq_err loop_post(struct loop *loop, loop_fn *fn, void *arg);

/* Milliseconds on the monotonic clock, cached once per round. */
uint64_t loop_now_ms(struct loop *loop);

#endif
