#include "imap/base/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 256
#define LOOP_MAX_HOOKS	8

struct loop_io {
	struct loop *loop;
	int fd;
	unsigned events;
	loop_io_fn *fn;
	void *arg;
	bool dead;	  /* removed; freed after the current dispatch round */
	size_t all_index; /* position in loop->all_ios */
	struct loop_io *next_dead;
};

struct loop_timer {
	struct loop *loop;
	uint64_t due_ms;
	uint64_t seq; /* ties broken by creation order, so equal deadlines fire FIFO */
	size_t heap_index;
	loop_fn *fn;
	void *arg;
};

struct loop_post {
	loop_fn *fn;
	void *arg;
	struct loop_post *next;
};

struct loop {
	int epfd;
	int wakefd;
	atomic_bool stopping;
	uint64_t now_ms;

	struct loop_timer **heap;
	size_t heap_len, heap_cap;
	uint64_t timer_seq;

	struct {
		loop_fn *fn;
		void *arg;
	} hooks[LOOP_MAX_HOOKS];
	size_t nhooks;

	pthread_mutex_t post_lock;
	struct loop_post *posts, **posts_tail;

	struct loop_io *dead;
	struct loop_io **all_ios; /* every live watcher, so loop_destroy can free them */
	size_t all_len, all_cap;
};

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

imapq_err loop_create(struct loop **loop_r)
{
	struct loop *loop = calloc(1, sizeof *loop);
	if (loop == NULL)
		return IMAPQ_E_NOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	loop->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop->epfd < 0 || loop->wakefd < 0)
		goto fail;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) != 0)
		goto fail;
	pthread_mutex_init(&loop->post_lock, NULL);
	loop->posts_tail = &loop->posts;
	loop->now_ms = monotonic_ms();
	*loop_r = loop;
	return IMAPQ_OK;
fail:
	if (loop->epfd >= 0)
		close(loop->epfd);
	if (loop->wakefd >= 0)
		close(loop->wakefd);
	free(loop);
	return IMAPQ_E_IO;
}

/* Frees watchers removed during the last round. */
static void free_dead(struct loop *loop)
{
	while (loop->dead != NULL) {
		struct loop_io *io = loop->dead;
		loop->dead = io->next_dead;
		free(io);
	}
}

void loop_destroy(struct loop **loopp)
{
	struct loop *loop = *loopp;
	if (loop == NULL)
		return;
	*loopp = NULL;
	for (size_t i = 0; i < loop->all_len; i++)
		free(loop->all_ios[i]);
	free(loop->all_ios);
	free_dead(loop);
	for (size_t i = 0; i < loop->heap_len; i++)
		free(loop->heap[i]);
	free(loop->heap);
	while (loop->posts != NULL) {
		struct loop_post *p = loop->posts;
		loop->posts = p->next;
		free(p);
	}
	pthread_mutex_destroy(&loop->post_lock);
	close(loop->epfd);
	close(loop->wakefd);
	free(loop);
}

static uint32_t epoll_mask(unsigned events)
{
	uint32_t mask = 0;
	if (events & LOOP_READ)
		mask |= EPOLLIN | EPOLLRDHUP;
	if (events & LOOP_WRITE)
		mask |= EPOLLOUT;
	return mask;
}

imapq_err loop_io_add(struct loop *loop, int fd, unsigned events, loop_io_fn *fn, void *arg,
		      struct loop_io **io_r)
{
	if (loop->all_len == loop->all_cap) {
		size_t cap = loop->all_cap ? loop->all_cap * 2 : 64;
		struct loop_io **all = realloc(loop->all_ios, cap * sizeof *all);
		if (all == NULL)
			return IMAPQ_E_NOMEM;
		loop->all_ios = all;
		loop->all_cap = cap;
	}
	struct loop_io *io = calloc(1, sizeof *io);
	if (io == NULL)
		return IMAPQ_E_NOMEM;
	*io = (struct loop_io){.loop = loop, .fd = fd, .events = events, .fn = fn, .arg = arg};
	struct epoll_event ev = {.events = epoll_mask(events), .data.ptr = io};
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		free(io);
		return errno == ENOMEM ? IMAPQ_E_NOMEM : IMAPQ_E_INVALID;
	}
	io->all_index = loop->all_len;
	loop->all_ios[loop->all_len++] = io;
	*io_r = io;
	return IMAPQ_OK;
}

imapq_err loop_io_set(struct loop_io *io, unsigned events)
{
	if (io->events == events)
		return IMAPQ_OK;
	struct epoll_event ev = {.events = epoll_mask(events), .data.ptr = io};
	if (epoll_ctl(io->loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) != 0)
		return IMAPQ_E_IO;
	io->events = events;
	return IMAPQ_OK;
}

void loop_io_remove(struct loop_io **iop)
{
	struct loop_io *io = *iop;
	if (io == NULL)
		return;
	*iop = NULL;
	struct loop *loop = io->loop;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	struct loop_io *last = loop->all_ios[--loop->all_len];
	loop->all_ios[io->all_index] = last;
	last->all_index = io->all_index;
	/* Events for it may still sit in this round's batch: free it after the round. */
	io->dead = true;
	io->next_dead = loop->dead;
	loop->dead = io;
}

/* Heap order: earlier deadline first, then creation order. */
static bool timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
	return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_place(struct loop *loop, size_t i, struct loop_timer *t)
{
	loop->heap[i] = t;
	t->heap_index = i;
}

static void heap_up(struct loop *loop, size_t i)
{
	struct loop_timer *t = loop->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!timer_before(t, loop->heap[parent]))
			break;
		heap_place(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_place(loop, i, t);
}

static void heap_down(struct loop *loop, size_t i)
{
	struct loop_timer *t = loop->heap[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= loop->heap_len)
			break;
		if (child + 1 < loop->heap_len &&
		    timer_before(loop->heap[child + 1], loop->heap[child]))
			child++;
		if (!timer_before(loop->heap[child], t))
			break;
		heap_place(loop, i, loop->heap[child]);
		i = child;
	}
	heap_place(loop, i, t);
}

/* Takes the timer at heap index i out of the heap. */
static void heap_remove(struct loop *loop, size_t i)
{
	struct loop_timer *last = loop->heap[--loop->heap_len];
	if (i == loop->heap_len)
		return;
	heap_place(loop, i, last);
	heap_down(loop, i);
	heap_up(loop, last->heap_index);
}

imapq_err loop_timer_add(struct loop *loop, uint64_t delay_ms, loop_fn *fn, void *arg,
			 struct loop_timer **timer_r)
{
	if (loop->heap_len == loop->heap_cap) {
		size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
		struct loop_timer **heap = realloc(loop->heap, cap * sizeof *heap);
		if (heap == NULL)
			return IMAPQ_E_NOMEM;
		loop->heap = heap;
		loop->heap_cap = cap;
	}
	struct loop_timer *t = malloc(sizeof *t);
	if (t == NULL)
		return IMAPQ_E_NOMEM;
	*t = (struct loop_timer){.loop = loop,
				 .due_ms = monotonic_ms() + delay_ms,
				 .seq = loop->timer_seq++,
				 .fn = fn,
				 .arg = arg};
	loop->heap_len++;
	heap_place(loop, loop->heap_len - 1, t);
	heap_up(loop, loop->heap_len - 1);
	if (timer_r != NULL)
		*timer_r = t;
	return IMAPQ_OK;
}

void loop_timer_cancel(struct loop_timer **timerp)
{
	struct loop_timer *t = *timerp;
	if (t == NULL)
		return;
	*timerp = NULL;
	heap_remove(t->loop, t->heap_index);
	free(t);
}

imapq_err loop_before_poll(struct loop *loop, loop_fn *fn, void *arg)
{
	if (loop->nhooks == LOOP_MAX_HOOKS)
		return IMAPQ_E_LIMIT;
	loop->hooks[loop->nhooks].fn = fn;
	loop->hooks[loop->nhooks].arg = arg;
	loop->nhooks++;
	return IMAPQ_OK;
}

/* Wakes the loop from another thread or a signal handler. */
static void wake(struct loop *loop)
{
	uint64_t one = 1;
	ssize_t n = write(loop->wakefd, &one, sizeof one);
	(void)n; /* EAGAIN means a wake-up is already pending */
}

imapq_err loop_post(struct loop *loop, loop_fn *fn, void *arg)
{
	struct loop_post *p = malloc(sizeof *p);
	if (p == NULL)
		return IMAPQ_E_NOMEM;
	*p = (struct loop_post){.fn = fn, .arg = arg};
	pthread_mutex_lock(&loop->post_lock);
	*loop->posts_tail = p;
	loop->posts_tail = &p->next;
	pthread_mutex_unlock(&loop->post_lock);
	wake(loop);
	return IMAPQ_OK;
}

void loop_stop(struct loop *loop)
{
	atomic_store(&loop->stopping, true);
	wake(loop);
}

uint64_t loop_now_ms(struct loop *loop)
{
	return loop->now_ms;
}

/* Runs the functions posted from other threads, in posting order. */
static void run_posts(struct loop *loop)
{
	uint64_t count;
	ssize_t n = read(loop->wakefd, &count, sizeof count);
	(void)n;
	pthread_mutex_lock(&loop->post_lock);
	struct loop_post *list = loop->posts;
	loop->posts = NULL;
	loop->posts_tail = &loop->posts;
	pthread_mutex_unlock(&loop->post_lock);
	while (list != NULL) {
		struct loop_post *p = list;
		list = p->next;
		p->fn(p->arg);
		free(p);
	}
}

/* Fires every timer that is due. */
static void run_timers(struct loop *loop)
{
	while (loop->heap_len > 0 && loop->heap[0]->due_ms <= loop->now_ms) {
		struct loop_timer *t = loop->heap[0];
		heap_remove(loop, 0);
		loop_fn *fn = t->fn;
		void *arg = t->arg;
		free(t);
		fn(arg);
	}
}

imapq_err loop_run(struct loop *loop)
{
	struct epoll_event events[LOOP_MAX_EVENTS];
	while (!atomic_load(&loop->stopping)) {
		for (size_t i = 0; i < loop->nhooks; i++)
			loop->hooks[i].fn(loop->hooks[i].arg);

		int timeout = -1;
		if (loop->heap_len > 0) {
			uint64_t now = monotonic_ms();
			uint64_t due = loop->heap[0]->due_ms;
			timeout = due <= now ? 0 : (int)(due - now > 60000 ? 60000 : due - now);
		}
		int n = epoll_wait(loop->epfd, events, LOOP_MAX_EVENTS, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return IMAPQ_E_IO;
		}
		loop->now_ms = monotonic_ms();
		for (int i = 0; i < n; i++) {
			struct loop_io *io = events[i].data.ptr;
			if (io == NULL) {
				run_posts(loop);
				continue;
			}
			if (io->dead)
				continue;
			unsigned ready = 0;
			if (events[i].events & EPOLLIN)
				ready |= LOOP_READ;
			if (events[i].events & EPOLLOUT)
				ready |= LOOP_WRITE;
			if (events[i].events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP))
				ready |= LOOP_HANGUP;
			io->fn(io->arg, ready);
		}
		run_timers(loop);
		free_dead(loop);
	}
	atomic_store(&loop->stopping, false);
	return IMAPQ_OK;
}
