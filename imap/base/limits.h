/* Every limit of imapq in one place, each with its unit and the reason for its value. */
#ifndef IMAPQ_LIMITS_H
#define IMAPQ_LIMITS_H

/* Longest mailbox (queue) name in bytes: deep enough for hierarchies, short enough to log. */
#define IMAPQ_MAX_MAILBOX_NAME 255
/* Mailboxes per store: each keeps a small header in RAM and one checkpoint record per segment. */
#define IMAPQ_MAX_MAILBOXES 100000
/* Keywords per mailbox: flags and keywords share one 64-bit mask per message (5 system flags). */
#define IMAPQ_MAX_KEYWORDS 59
/* Longest keyword in bytes (RFC 3501 atoms have no limit; 64 keeps records small). */
#define IMAPQ_MAX_KEYWORD 64
/* Largest message body in bytes (APPENDLIMIT): bodies are streamed, but one record must fit. */
#define IMAPQ_MAX_MESSAGE_SIZE (64ull * 1024 * 1024)
/* Largest metadata key / value of a mailbox in bytes (RFC 5464 allows servers to limit them). */
#define IMAPQ_MAX_ANNOTATION_KEY   256
#define IMAPQ_MAX_ANNOTATION_VALUE 4096
/* Metadata entries per mailbox: queue settings need a handful. */
#define IMAPQ_MAX_ANNOTATIONS 64
/* Largest queue setting (lease and retention seconds, max attempts): one year of seconds keeps
 * now + lease far inside a u32 due time. */
#define IMAPQ_MAX_QUEUE_SETTING 31536000u
/* Messages per mailbox unless the store's options or the queue's max-messages setting say
 * otherwise: each message costs about 50 bytes of RAM (its 48-byte msgtable entry plus about
 * 1 bit per claim index), so a full mailbox holds about 500 MB, and COPY of a mailbox onto itself
 * cannot double it without bound. */
#define IMAPQ_MAX_MAILBOX_MESSAGES 10000000u
/* Messages in the whole store unless its options say otherwise: 20 million entries are about
 * 1 GB of RAM, and replay holds them in hash maps of 70-140 bytes each before the msgtables are
 * built, so a restart of a full store stays under 3 GB. */
#define IMAPQ_MAX_STORE_MESSAGES 20000000ull
/* Largest per-queue max-messages setting: UIDs are 32-bit, so no mailbox holds more anyway. */
#define IMAPQ_MAX_MESSAGES_SETTING 4294967294u

/* Journal segment size in bytes before rotation: large enough that rotation is rare, small
 * enough that compaction can free space in useful steps. */
#define IMAPQ_JOURNAL_SEGMENT_BYTES (64ull * 1024 * 1024)
/* Bytes buffered in memory before a writer must wait for the flusher: bounds RAM under load. */
#define IMAPQ_JOURNAL_BUFFER_BYTES (8ull * 1024 * 1024)
/* Largest meta part of one journal record in bytes: keeps a record header checkable in RAM. */
#define IMAPQ_JOURNAL_MAX_META (1024u * 1024)
/* Interval of the flusher in --fsync batch mode, in milliseconds. */
#define IMAPQ_JOURNAL_BATCH_MS 10
/* A dropped segment's file is shortened this many bytes at a time, with this pause between
 * steps, before it is closed: on a file system with online discard, freeing 128 MiB at once kept
 * every other fdatasync waiting about 30 ms; in 8 MiB steps, about 3 ms. */
#define IMAPQ_JOURNAL_RELEASE_STEP     (8ull * 1024 * 1024)
#define IMAPQ_JOURNAL_RELEASE_PAUSE_MS 2
/* Compaction frees journal bytes that no longer hold live state ("dead" bytes). A pass starts
 * when they pass both this many segments and IMAPQ_COMPACT_DEAD_PERCENT of the live state (or
 * only this many segments when the disk has less room left than that share), and goes on until
 * they are back within this many segments. A pass re-writes the live state at most
 * once and frees at least as many bytes as it re-writes, so a large backlog is not copied again
 * for every few segments of churn; a store with little live data stays within two segments of
 * its live size. */
#define IMAPQ_COMPACT_SLACK_SEGMENTS 2
#define IMAPQ_COMPACT_DEAD_PERCENT   100
/* Compaction works in slices: each holds the store lock for at most this many carried messages,
 * this many body bytes (or one message, when a body is larger) and this many examined messages,
 * then leaves the lock free for as long as it held it, so foreground work waits about a
 * millisecond for it and it takes at most about half of the lock's time. */
#define IMAPQ_COMPACT_SLICE_MESSAGES 256
#define IMAPQ_COMPACT_SLICE_BYTES    (1024 * 1024)
#define IMAPQ_COMPACT_SLICE_SCAN     16384

/* Command text in bytes (literal data excluded) once authenticated: FETCH and SEARCH lines with
 * long UID sets stay well below 64 KiB, and the line is what a command holds in memory. */
#define IMAPQ_MAX_LINE (64 * 1024)
/* Command text before authentication: LOGIN, AUTHENTICATE and STARTTLS need far less, and an
 * unauthenticated peer should not make the server hold more. */
#define IMAPQ_MAX_LINE_PREAUTH (8 * 1024)
/* Literal bytes one non-streamed command may buffer in total (strings such as passwords,
 * metadata values and search keys); message bodies are streamed, not buffered. */
#define IMAPQ_MAX_LITERAL (64 * 1024)
/* The same before authentication: a SASL response or password never needs more. */
#define IMAPQ_MAX_LITERAL_PREAUTH (8 * 1024)
/* Nesting of parenthesised lists in a command: real commands (SEARCH with OR groups, FETCH with
 * header lists) nest a few levels; the limit bounds recursion in the command layer. */
#define IMAPQ_MAX_NESTING 16
/* Nesting of SEARCH keys (NOT, OR and groups): bounds the recursion of parsing and evaluation. */
#define IMAPQ_MAX_SEARCH_DEPTH 64
/* Messages a SEARCH scan or a FETCH covers per hold of the store's lock, so other threads wait
 * one step at most and memory holds one step's messages. */
#define IMAPQ_SEARCH_SCAN_STEP 16384
/* Messages one COPY or MOVE may copy: it runs under one hold of the store's lock (about 2.6 us
 * per message here), so a larger one would stall every client; past it NO [LIMIT]. */
#define IMAPQ_MAX_COPY_MESSAGES 100000
/* Arguments per command, list members included: a STORE of every keyword or a large SEARCH fits
 * with room to spare, while one line cannot make the parser build an enormous tree. */
#define IMAPQ_MAX_ARGS 1024
/* Largest refused non-synchronising literal that is read and discarded to keep the stream in
 * sync; a peer announcing more is disconnected instead (RFC 7888 section 4 allows either). */
#define IMAPQ_MAX_LITERAL_DRAIN (4 * IMAPQ_MAX_MESSAGE_SIZE)

/* Bytes of one MIME part's header held in memory while parsing a message: real headers (long
 * Received chains, DKIM signatures) stay far below; lines past it are treated as body. */
#define MAIL_MAX_HEADER_BYTES (256 * 1024)
/* Nesting of multipart and message/rfc822 parts: bounds the recursion of the message parser and
 * of the BODYSTRUCTURE writer; deeper parts are treated as text/plain. */
#define MAIL_MAX_DEPTH 32
/* MIME parts itemised per message: bounds the RAM of a parsed structure; later parts are not
 * listed (their bytes still belong to the enclosing part). */
#define MAIL_MAX_PARTS 10000
/* Longest MIME boundary accepted: RFC 2046 allows 70; longer ones make a part text/plain. */
#define MAIL_MAX_BOUNDARY 200
/* Header value bytes a parsed structure keeps in total: a hostile message made of headers
 * cannot make the tree large; values past it are dropped (treated as absent). */
#define MAIL_MAX_TREE_BYTES (4 * 1024 * 1024)
/* Bytes of a message read per step when parsing, searching or copying a section: the window
 * that bounds RAM for messages of up to IMAPQ_MAX_MESSAGE_SIZE. */
#define MAIL_READ_WINDOW (64 * 1024)

/* --- IMAP server --- */
/* Connections served at once: each costs a session and two buffers. */
#define IMAPQ_MAX_CONNECTIONS 10000
/* Connections from one client address at once: a host running many workers fits, while one
 * address cannot take every session (and its pending output) from everyone else. Loopback peers
 * are exempt: behind a local proxy or TLS terminator they are every client at once. */
#define IMAPQ_MAX_CONNECTIONS_PER_ADDR 256
/* Seconds an unauthenticated connection may stay silent: logins are quick. */
#define IMAPQ_PREAUTH_TIMEOUT_S 60
/* Seconds a connection may take to log in, however busy it keeps: a peer that dribbles a byte
 * now and then would otherwise hold an unauthenticated session forever. */
#define IMAPQ_LOGIN_DEADLINE_S 120
/* Seconds an authenticated connection (IDLE included) may stay silent: RFC 3501 asks for at
 * least 30 minutes, and RFC 2177 clients re-issue IDLE within 29. */
#define IMAPQ_AUTH_TIMEOUT_S (30 * 60 + 60)
/* Seconds a TLS handshake may take: real clients finish in milliseconds, and a peer that stalls
 * holds a session and OpenSSL's buffers until then. */
#define IMAPQ_TLS_HANDSHAKE_TIMEOUT_S 10
/* Bytes read from a socket per round, so one busy client cannot starve the others. */
#define IMAPQ_READ_CHUNK (64 * 1024)
/* Output bytes a session may queue before the server stops reading its commands: this caps the
 * pipelined commands read but not yet answered (a client that does not read its replies stops
 * being read, and nothing is dropped or reordered). */
#define IMAPQ_MAX_PENDING_OUTPUT (4 * 1024 * 1024)
/* The same before authentication: greetings and CAPABILITY answers are small, and an anonymous
 * peer should not make the server hold megabytes. */
#define IMAPQ_MAX_PENDING_OUTPUT_PREAUTH (64 * 1024)
/* Output bytes one FETCH may build before it stops with NO [LIMIT]: a command's reply is built
 * whole before it is sent, so this bounds a session's memory at this plus one message, while
 * FLAGS of a million messages (about 50 MB) or a few large bodies still fit in one command. */
#define IMAPQ_MAX_COMMAND_OUTPUT (64 * 1024 * 1024)
/* APPEND bodies up to this size are spooled in memory, larger ones in an unlinked file. */
#define IMAPQ_SPOOL_MEMORY (256 * 1024)
/* Failed LOGIN/AUTHENTICATE attempts before the connection is closed. */
#define IMAPQ_MAX_AUTH_FAILURES 3
/* Password checks queued or running on the server's password thread at once (each holds its
 * session until answered): one 210,000-iteration PBKDF2 hash takes 50-100 ms, so a full queue is
 * a few seconds of waiting; past it a login is refused at once rather than queued for longer. */
#define IMAPQ_MAX_PENDING_LOGINS 64
/* A SEARCH that reads message content (BODY, TEXT, HEADER, SENT*), or scans more than
 * IMAPQ_SEARCH_SCAN_STEP messages, runs on the server's search thread, so it holds only its own
 * session. It may run for this long (from when the thread starts it) before it answers
 * NO [LIMIT]; at most this many wait or run at once (one per session at most), and past them a
 * search is refused with NO [UNAVAILABLE]. */
#define IMAPQ_SEARCH_MS		   30000
#define IMAPQ_MAX_PENDING_SEARCHES 64

/* --- HTTP front --- */
/* Bytes of a JSON request body (claims, acks, settings, batches, JSON jobs): it is held and
 * parsed in memory, so this bounds what one request costs (text plus tree). */
#define IMAPQ_HTTP_MAX_JSON (4 * 1024 * 1024)
/* Bytes of a raw (non-JSON) job body posted over HTTP: buffered in memory before the enqueue. */
#define IMAPQ_HTTP_MAX_BODY (16 * 1024 * 1024)
/* Bytes of an oversized body read and discarded so the 413 can be answered on a live
 * connection; a peer that keeps sending past it is disconnected. */
#define IMAPQ_HTTP_MAX_DRAIN (4 * IMAPQ_HTTP_MAX_BODY)
/* Nesting of arrays and objects in a JSON body, checked before parsing: real payloads nest a
 * few levels, and cJSON's own limit (1000) would let one request recurse deeply. */
#define IMAPQ_HTTP_MAX_JSON_DEPTH 64
/* Jobs in one batch enqueue: one reply lists every id, and the batch shares one fsync. */
#define IMAPQ_HTTP_MAX_BATCH 1000
/* Jobs one claim may take: each reply carries their bodies. */
#define IMAPQ_HTTP_MAX_CLAIM 100
/* Jobs one peek lists. */
#define IMAPQ_HTTP_MAX_PEEK 1000
/* Jobs one page of the change feed lists: the page and its reply are built in memory. */
#define IMAPQ_HTTP_MAX_CHANGES 1000
/* Seconds a claim may long-poll: below common proxy and client timeouts (60 s). */
#define IMAPQ_HTTP_MAX_WAIT 30
/* Long polls parked at once: each holds a suspended connection and a queue waiter. */
#define IMAPQ_HTTP_MAX_LONG_POLLS 10000
/* HTTP connections at once, and from one IP address (a worker fleet behind one NAT fits). */
#define IMAPQ_HTTP_MAX_CONNECTIONS 10000
#define IMAPQ_HTTP_MAX_PER_IP	   1024
/* Bytes of libmicrohttpd memory per connection (request line, headers, read buffer): headers
 * past it are answered 431. libmicrohttpd zeroes the whole pool before each request of a
 * keep-alive connection, so this is paid per request; 16 KiB still takes ~15 KiB of headers. */
#define IMAPQ_HTTP_CONNECTION_MEMORY (16 * 1024)
/* Seconds a silent connection stays open (parked long polls keep their own deadline). */
#define IMAPQ_HTTP_TIMEOUT_S 60
/* Pool threads per online core, and the most there may be. No request holds a thread while
 * its fsync runs (replies wait suspended), but every group commit resumes its connections in
 * one burst, and two threads per core answer the burst in parallel where one per core queues
 * it (docs/benchmarks.md, "Figures with two pool threads per core"). */
#define IMAPQ_HTTP_THREADS_PER_CORE 2
#define IMAPQ_HTTP_MAX_THREADS	    32
/* Connections per pool thread served by the poll() daemon; later ones go to the epoll daemon.
 * Every durable reply suspends and resumes its connection: in epoll mode libmicrohttpd pays two
 * epoll_ctl calls and an extra read for that, in poll mode nothing, but a poll() looks at every
 * connection of its thread on each wake-up. With 16 busy connections per thread poll mode gave
 * a tenth more cycles; with 48 idle connections more per thread it gave half as many
 * (docs/benchmarks.md, "Figures with a poll daemon for the first connections"). */
#define IMAPQ_HTTP_POLL_PER_THREAD 16
/* Milliseconds shutdown waits for resumed long polls and in-flight requests to finish. */
#define IMAPQ_HTTP_SHUTDOWN_GRACE_MS 2000

/* The IMAP client library (imap/client). */
/* Bytes of one server response, literals included: a whole message body plus its FETCH line. */
#define IMAPQ_CLIENT_MAX_RESPONSE (IMAPQ_MAX_MESSAGE_SIZE + 1024 * 1024)
/* Bytes of one response line between literals: a plain SEARCH over a large queue lists every UID.
 */
#define IMAPQ_CLIENT_MAX_LINE (16 * 1024 * 1024)
/* Nesting of lists in a response: BODYSTRUCTURE nests two lists per MIME level (MAIL_MAX_DEPTH). */
#define IMAPQ_CLIENT_MAX_NESTING 80
/* Milliseconds a blocking client call waits for the server unless told otherwise. */
#define IMAPQ_CLIENT_TIMEOUT_MS 30000
/* Search-fetch-store rounds one claim tries before giving up: each lost round is a job another
 * worker took, so this only ends claims against a server whose answers never settle. */
#define IMAPQ_CLIENT_CLAIM_ROUNDS 1000

/* The imapq command-line tool (cmd/imapq). */
/* Bytes of one HTTP reply the tool holds: a claim of 100 jobs with sizeable bodies fits, while a
 * confused server cannot make the tool take all memory. */
#define IMAPQ_CLI_MAX_REPLY (1024ull * 1024 * 1024)
/* Seconds any request but a long poll may take, connecting included. */
#define IMAPQ_CLI_REQUEST_TIMEOUT_S 30
/* Seconds a worker's claim long-polls: below IMAPQ_HTTP_MAX_WAIT, and a drain cuts it short. */
#define IMAPQ_CLI_WORK_WAIT_S 20
/* Milliseconds before a worker retries a failed extension, ack or release (a failed claim
 * waits twice as long after each failure, up to 32 times this). */
#define IMAPQ_CLI_RETRY_MS 1000
/* Failed attempts at an ack or release before a worker gives up and lets the lease run out. */
#define IMAPQ_CLI_REPORT_RETRIES 5

/* Users and roles (imap/server/users.c, access.c; docs/security.md). */
/* Grants (role or role:pattern) of one user: a handful in practice; bounds the per-name check. */
#define IMAPQ_ACCESS_MAX_GRANTS 64
/* Users in a users file: every token check compares against all of them. */
#define IMAPQ_USERS_MAX 10000
/* HTTP tokens one user may hold at a time (rotation keeps an old one while a new one rolls out). */
#define IMAPQ_USERS_MAX_TOKENS 16
/* Bytes of one users file line: a user with its grants, hash and tokens. */
#define IMAPQ_USERS_MAX_LINE 8192
/* PBKDF2 iterations accepted from a users file: below, the hash is too cheap; above, one login
 * could stall the event loop for seconds. */
#define IMAPQ_USERS_MIN_ITERATIONS 1000
#define IMAPQ_USERS_MAX_ITERATIONS 5000000
/* Delay before a failed LOGIN/AUTHENTICATE is answered, doubled for each further failure on the
 * connection up to the maximum: slows guessing without holding the event loop (a timer). */
#define IMAPQ_AUTH_FAIL_DELAY_MS     250
#define IMAPQ_AUTH_FAIL_DELAY_GROWTH 16 /* the maximum is this times the first: 4 s */

#endif
