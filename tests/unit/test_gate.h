/* A gate for tests that hold one thread inside a call (a read, a close) while another shows
 * what it can do meanwhile: the held call passes the gate, which stops it once when armed until
 * the test opens it; every wait for a flag has a time limit, so that a test whose other thread
 * is stuck fails instead of hanging. */
#ifndef IMAPQ_TEST_GATE_H
#define IMAPQ_TEST_GATE_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

struct test_gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool armed;   /* the next pass stops */
	bool reached; /* a pass stopped and waits */
	bool open;    /* it may go on */
	bool done;    /* the other thread's work finished */
};

#define TEST_GATE_INIT                                                                             \
	{                                                                                          \
		PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false, false    \
	}

/* Sets *flag under the gate's mutex and wakes its waiters. */
static inline void test_gate_set(struct test_gate *g, bool *flag)
{
	pthread_mutex_lock(&g->mu);
	*flag = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

/* Stops here, when the gate is armed and stop says so, until the gate is open. */
static inline void test_gate_pass(struct test_gate *g, bool stop)
{
	pthread_mutex_lock(&g->mu);
	if (g->armed && stop) {
		g->armed = false;
		g->reached = true;
		pthread_cond_broadcast(&g->cv);
		while (!g->open)
			pthread_cond_wait(&g->cv, &g->mu);
	}
	pthread_mutex_unlock(&g->mu);
}

/* Waits up to seconds for *flag; gives its value. */
static inline bool test_gate_wait(struct test_gate *g, bool *flag, int seconds)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += seconds;
	pthread_mutex_lock(&g->mu);
	while (!*flag && pthread_cond_timedwait(&g->cv, &g->mu, &until) == 0)
		;
	bool set = *flag;
	pthread_mutex_unlock(&g->mu);
	return set;
}

#endif
