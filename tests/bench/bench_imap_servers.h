/* The servers of bench_imap: starting imapqd (--fsync always) and a throwaway Dovecot (sdbox, its
 * default fsync) in scratch folders on loopback, connecting to them with the IMAP client library,
 * and stopping them. Header-only, because every tests/bench/bench_*.c is its own program; only
 * bench_imap.c includes it. */
#ifndef IMAPQ_BENCH_IMAP_SERVERS_H
#define IMAPQ_BENCH_IMAP_SERVERS_H

#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>

#include "bench.h"
#include "imap/client/client.h"

/* How long a daemon may take to become ready, and to exit after SIGTERM, seconds. */
#define START_S 30.0
#define STOP_S	30.0
/* Dovecot's throwaway account. */
#define DOVECOT_USER "q"
#define DOVECOT_PASS "q"

/* A server under test. */
struct target {
	const char *name; /* "imapqd" or "dovecot", also the prefix of its figures */
	bool exact;	  /* its conditional store is exact: a double claim fails the run */
	pid_t pid;
	char dir[PATH_MAX];
	char log[PATH_MAX + 16];
	unsigned imap_port, http_port;
	char user[64], password[128], token[128];
};

/* Connects to the target's IMAP port and logs in; selects queue when it is not NULL. Returns
 * the client, or NULL with the reason in err. */
static inline struct client *target_connect(const struct target *t, const char *queue, char *err,
					    size_t cap)
{
	struct client_options o = {.host = "127.0.0.1", .port = t->imap_port};
	struct client *c = NULL;

	if (client_connect(&o, err, cap, &c) != IMAPQ_OK)
		return NULL;
	if (client_login(c, t->user, t->password) != IMAPQ_OK ||
	    (queue && client_select(c, queue, 0, NULL) != IMAPQ_OK)) {
		snprintf(err, cap, "%s", client_error(c));
		client_destroy(&c);
	}
	return c;
}

/* Stops a target with SIGTERM; an exact target (imapqd) must exit with status 0. */
static inline bool target_stop(struct target *t)
{
	int status;

	if (bench_proc_stop(&t->pid, STOP_S, &status) != 0) {
		bench_fail("%s did not exit within %.0f s of SIGTERM", t->name, STOP_S);
		return false;
	}
	if (t->exact && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		bench_fail("%s exited with %s %d after SIGTERM (log: %s)", t->name,
			   WIFEXITED(status) ? "status" : "signal",
			   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), t->log);
		return false;
	}
	return true;
}

/* Starts imapqd (--fsync always) on ephemeral ports and reads its ports and the demo account. */
static inline bool imapqd_start(struct target *t, const char *bin)
{
	char data[PATH_MAX + 8], ports[PATH_MAX + 8], creds[PATH_MAX + 24], port[16];
	char *argv[] = {(char *)bin,   "--data",      data,  "--imap",	"127.0.0.1:0", "--http",
			"127.0.0.1:0", "--port-file", ports, "--fsync", "always",      NULL};
	uint64_t start = bench_now_ns();
	int status;

	snprintf(data, sizeof(data), "%s/data", t->dir);
	snprintf(ports, sizeof(ports), "%s/ports", t->dir);
	snprintf(creds, sizeof(creds), "%s/credentials", data);
	snprintf(t->log, sizeof(t->log), "%s/imapqd.log", t->dir);
	t->pid = bench_proc_spawn(argv, t->log);
	if (t->pid < 0) {
		bench_fail("imapqd: fork: %s", strerror(errno));
		return false;
	}
	while (bench_file_value(ports, "http", port, sizeof(port))) {
		if (bench_proc_exited(&t->pid, &status)) {
			bench_fail("imapqd exited before serving (log: %s)", t->log);
			return false;
		}
		if (bench_since_s(start) > START_S) {
			bench_fail("imapqd did not write %s within %.0f s", ports, START_S);
			return false;
		}
		usleep(10000);
	}
	t->http_port = (unsigned)strtoul(port, NULL, 10);
	if (bench_file_value(ports, "imap", port, sizeof(port)) ||
	    bench_file_value(creds, "user", t->user, sizeof(t->user)) ||
	    bench_file_value(creds, "password", t->password, sizeof(t->password)) ||
	    bench_file_value(creds, "token", t->token, sizeof(t->token))) {
		bench_fail("imapqd's port file or %s lacks a line", creds);
		return false;
	}
	t->imap_port = (unsigned)strtoul(port, NULL, 10);
	return true;
}

/* Writes Dovecot's configuration and its one-user passwd file for port. Root runs the mail
 * processes as nobody; another user runs everything as itself. */
static inline bool dovecot_configure(struct target *t, unsigned port)
{
	char path[PATH_MAX + 32], home[PATH_MAX + 8], who[512] = "";
	struct passwd *pw = getpwuid(geteuid());
	struct group *gr = getgrgid(getegid());
	uid_t uid = geteuid();
	gid_t gid = getegid();
	FILE *f;

	if (uid == 0) {
		struct passwd *nobody = getpwnam("nobody");

		uid = nobody ? nobody->pw_uid : 65534;
		gid = nobody ? nobody->pw_gid : 65534;
	} else if (pw && gr) {
		/* Without root nothing can chroot or change user. */
		snprintf(who, sizeof(who),
			 "default_internal_user = %s\ndefault_login_user = %s\n"
			 "default_internal_group = %s\nservice anvil {\n  chroot =\n}\n"
			 "service imap-login {\n  chroot =\n}\n",
			 pw->pw_name, pw->pw_name, gr->gr_name);
	}
	snprintf(home, sizeof(home), "%s/home", t->dir);
	snprintf(path, sizeof(path), "%s/passwd", t->dir);
	f = fopen(path, "w");
	if (!f)
		return false;
	fprintf(f, "%s:{PLAIN}%s:%u:%u::%s::userdb_mail=sdbox:~/sdbox\n", DOVECOT_USER,
		DOVECOT_PASS, (unsigned)uid, (unsigned)gid, home);
	fclose(f);
	snprintf(path, sizeof(path), "%s/dovecot.conf", t->dir);
	f = fopen(path, "w");
	if (!f)
		return false;
	fprintf(f,
		"base_dir = %s/base\nstate_dir = %s/state\nprotocols = imap\n"
		"listen = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n"
		"auth_mechanisms = plain login\nlog_path = %s\nmail_uid = %u\nmail_gid = %u\n"
		"first_valid_uid = 1\nfirst_valid_gid = 1\nmail_max_userip_connections = 100\n%s"
		"passdb {\n  driver = passwd-file\n  args = %s/passwd\n}\n"
		"userdb {\n  driver = passwd-file\n  args = %s/passwd\n}\n"
		"service imap-login {\n  inet_listener imap {\n    address = 127.0.0.1\n"
		"    port = %u\n  }\n  inet_listener imaps {\n    port = 0\n  }\n}\n",
		t->dir, t->dir, t->log, (unsigned)uid, (unsigned)gid, who, t->dir, t->dir, port);
	fclose(f);
	return chown(home, uid, gid) == 0;
}

/* Starts a throwaway Dovecot (dovecot -F -c FILE) on a free loopback port; tries a few ports in
 * case another process takes the one picked. On failure prints the end of its log. */
static inline bool dovecot_start(struct target *t, const char *bin)
{
	char conf[PATH_MAX + 16], sub[PATH_MAX + 8];
	char *argv[] = {(char *)bin, "-F", "-c", conf, NULL};
	static const char *const dirs[] = {"home", "base", "state"};
	int status = 0;

	snprintf(conf, sizeof(conf), "%s/dovecot.conf", t->dir);
	snprintf(t->log, sizeof(t->log), "%s/dovecot.log", t->dir);
	snprintf(t->user, sizeof(t->user), "%s", DOVECOT_USER);
	snprintf(t->password, sizeof(t->password), "%s", DOVECOT_PASS);
	/* The mail processes run as another user and must reach their home. */
	chmod(t->dir, 0755);
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(sub, sizeof(sub), "%s/%s", t->dir, dirs[i]);
		if (mkdir(sub, 0755) != 0) {
			bench_fail("mkdir %s: %s", sub, strerror(errno));
			return false;
		}
	}
	for (int attempt = 0; attempt < 3; attempt++) {
		t->imap_port = bench_free_port();
		if (!dovecot_configure(t, t->imap_port)) {
			bench_fail("cannot write Dovecot's configuration in %s: %s", t->dir,
				   strerror(errno));
			return false;
		}
		t->pid = bench_proc_spawn(argv, t->log);
		if (t->pid < 0) {
			bench_fail("dovecot: fork: %s", strerror(errno));
			return false;
		}
		switch (bench_proc_wait_listen(&t->pid, t->imap_port, START_S, &status)) {
		case 1:
			return true;
		case -1:
			bench_fail("dovecot did not listen within %.0f s; its log %s ends:",
				   START_S, t->log);
			bench_file_tail(t->log, stderr, 4096);
			return false;
		default:
			break;
		}
	}
	bench_fail("dovecot exited at start three times (%s %d); its log %s ends:",
		   WIFEXITED(status) ? "status" : "signal",
		   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), t->log);
	bench_file_tail(t->log, stderr, 4096);
	return false;
}

/* Creates a target's scratch folder. */
static inline bool target_dir(struct target *t)
{
	if (bench_dir_create(t->dir, sizeof(t->dir)) == 0)
		return true;
	bench_fail("cannot create a scratch folder: %s", strerror(errno));
	return false;
}

#endif
