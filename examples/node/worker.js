#!/usr/bin/env node
// A queue worker for imapq on the imapflow IMAP client from npm.
//
//     node worker.js --host 127.0.0.1 --port 1143 --user demo --password PW --queue jobs
//                    [--once] [--max-jobs N]
//
// Install once with `npm ci` in this folder (package-lock.json pins imapflow and everything
// it pulls in). Each round the worker claims the lowest ready job with a conditional store,
// reads it, processes it and acks it; a job whose body holds the word "fail" is released for
// another attempt, and after the queue's max-attempts the server moves it to "<queue>/dead".
// When the queue is empty it waits with IDLE (or, with --once, exits). SIGTERM or Ctrl-C ends
// it cleanly after the job in hand.
//
// The protocol is README.md's "Workers over IMAP". imapflow does most of it with its public
// API: LOGIN and ENABLE CONDSTORE (connect), SELECT (mailboxOpen), the ready search
// (search with ESEARCH RETURN (MIN)), FETCH FLAGS MODSEQ (fetchOne) and IDLE (idle).
// One thing it cannot do: tell a worker whether a conditional store took. Its
// messageFlagsAdd(range, flags, {unchangedSince}) resolves true even when the server answers
// "OK [MODIFIED uid]", and leaves UNCHANGEDSINCE out unless CONDSTORE is enabled, so two
// workers would both believe they hold a job. The worker therefore sends every conditional
// store through client.exec(), imapflow's command layer, which hands back the tagged response
// (with its response code) and lets the caller see the untagged FETCH echo. Two more commands
// go that way for smaller reasons: UID EXPUNGE (messageDelete would first store \Deleted
// without UNCHANGEDSINCE) and the fetch of imapq's ANNOTATION entries, which imapflow's fetch
// query does not know.
import { parseArgs } from 'node:util';
import { ImapFlow } from 'imapflow';
import { errorText, isMain } from './program.js';

// The lowest job that nobody holds, that is not delayed and not being deleted. imapflow
// compiles it to "UNKEYWORD $Claimed NOT KEYWORD $Delayed UNDELETED", which imapq answers
// from its flag index like the README's form.
const READY = { unKeyword: '$Claimed', not: { keyword: '$Delayed' }, deleted: false };
// Flags that mean the search answer was already stale when the job was fetched.
const BUSY = ['$Claimed', '$Delayed', '\\Deleted'];
// Seconds one IDLE lasts before the worker searches again; below imapflow's 5-minute socket
// timeout, and servers drop idlers after 30 minutes.
const IDLE_SECONDS = 120;

// The response code of a tagged reply as strings, e.g. ['MODIFIED', '7']; [] when it has none.
export function responseCode(tagged) {
	const first = tagged && tagged.attributes && tagged.attributes[0];
	if (!first || !Array.isArray(first.section))
		return [];
	return first.section.map((item) => String(item.value));
}

// The data items of an untagged "n FETCH (...)" as a Map from the upper-case item name to the
// parser's value (an atom, a string, a literal or a list).
function fetchItems(untagged) {
	const items = new Map();
	const list = untagged && untagged.attributes && untagged.attributes[1];
	if (!Array.isArray(list))
		return items;
	for (let i = 0; i + 1 < list.length; i += 2) {
		if (list[i] && typeof list[i].value === 'string')
			items.set(list[i].value.toUpperCase(), list[i + 1]);
	}
	return items;
}

// One IMAP connection with CONDSTORE enabled and the queue selected.
export class Worker {
	constructor(options) {
		this.queue = options.queue;
		this.stopping = false;
		this.changed = false; // the mailbox changed since the last search
		this.idling = null; // the IDLE in progress, if any
		this.breaking = null; // the NOOP that ends it, once asked for
		this.failure = null;
		this.client = new ImapFlow({
			host: options.host,
			port: options.port,
			secure: false,
			doSTARTTLS: false,
			auth: { user: options.user, pass: options.password },
			logger: false,
			disableAutoIdle: true, // the worker decides when to IDLE
			disableCompression: true,
		});
		// imapflow reports a broken connection as an event; without a listener Node would end
		// the process. The next command fails and says why.
		this.client.on('error', (err) => {
			this.failure = err;
		});
		// A new job (EXISTS) or a job released or whose delay ended (FETCH with FLAGS).
		this.client.on('exists', () => this.wake());
		this.client.on('flags', () => this.wake());
	}

	// Logs in (imapflow sends ENABLE CONDSTORE itself) and selects the queue.
	async open() {
		await this.client.connect();
		if (!this.client.enabled.has('CONDSTORE'))
			throw new Error('the server did not enable CONDSTORE');
		await this.client.mailboxOpen(this.queue);
	}

	// Asks a running IDLE to end: on a change, a signal or the IDLE_SECONDS timer.
	wake() {
		this.changed = true;
		if (this.idling && !this.breaking)
			this.breaking = this.client.noop().catch(() => {}); // imapflow sends DONE first
	}

	// A UID STORE with UNCHANGEDSINCE: the new receipt (a BigInt), or null when it did not take.
	// It took only when the tagged OK has no [MODIFIED] and the server echoed
	// "FETCH (UID uid MODSEQ (m))" without FLAGS; an untagged FETCH that carries FLAGS reports
	// someone else's change, never this store (some servers send one to a losing store).
	async conditionalStore(uid, since, operation, flags) {
		let receipt = null;
		const response = await this.client.exec(
			'UID STORE',
			[
				{ type: 'SEQUENCE', value: String(uid) },
				[
					{ type: 'ATOM', value: 'UNCHANGEDSINCE' },
					{ type: 'ATOM', value: String(since) },
				],
				{ type: 'ATOM', value: operation },
				flags.map((flag) => ({ type: 'ATOM', value: flag })),
			],
			{
				untagged: {
					FETCH: async (untagged) => {
						const items = fetchItems(untagged);
						const modseq = items.get('MODSEQ');
						if (items.has('FLAGS') || !items.has('UID') ||
						    String(items.get('UID').value) !== String(uid) ||
						    !Array.isArray(modseq) || !modseq.length)
							return;
						receipt = BigInt(modseq[0].value);
					},
				},
			},
		);
		const code = responseCode(response.response);
		response.next(); // imapflow holds the next command until the reply is released
		if (code.length && code[0].toUpperCase() === 'MODIFIED')
			return null; // the job changed since `since`: someone else holds it now
		return receipt; // null without an echo: the job is gone (acked elsewhere, dead-lettered)
	}

	// Claims the lowest ready job: {uid, receipt}, or null when none is ready.
	async claim() {
		for (;;) {
			this.changed = false;
			const found = await this.client.search(READY, { uid: true, returnOptions: ['MIN'] });
			if (found === false)
				throw new Error('UID SEARCH was refused');
			// An ESEARCH answer ({min}) or, from a server without ESEARCH, a list of UIDs.
			const uid = Array.isArray(found) ? (found.length ? Math.min(...found) : undefined) : found.min;
			if (!uid)
				return null;
			// The job's flags and mod-sequence: the base for the conditional claim.
			const job = await this.client.fetchOne(String(uid), { uid: true, flags: true }, { uid: true });
			if (!job || job.modseq === undefined || BUSY.some((flag) => job.flags.has(flag)))
				continue; // gone or taken since the search: look again
			const receipt = await this.conditionalStore(uid, job.modseq, '+FLAGS.SILENT', ['$Claimed']);
			if (receipt !== null)
				return { uid, receipt };
			// Another worker won this job; the next search will not offer it again.
		}
	}

	// The job's body (without the mail header) and how many times it has been claimed.
	async read(uid) {
		let body = Buffer.alloc(0);
		let attempts = 0;
		const response = await this.client.exec(
			'UID FETCH',
			[
				{ type: 'SEQUENCE', value: String(uid) },
				[
					{ type: 'ATOM', value: 'ANNOTATION' },
					[
						{ type: 'ATOM', value: '/vendor/imapq/attempts' },
						{ type: 'ATOM', value: 'value.shared' },
					],
					{ type: 'ATOM', value: 'BODY.PEEK', section: [{ type: 'ATOM', value: 'TEXT' }] },
				],
			],
			{
				untagged: {
					FETCH: async (untagged) => {
						const items = fetchItems(untagged);
						if (!items.has('UID') || String(items.get('UID').value) !== String(uid))
							return;
						// ANNOTATION (/vendor/imapq/attempts (value.shared "n"))
						const entry = items.get('ANNOTATION');
						const value = Array.isArray(entry) && Array.isArray(entry[1]) ? entry[1][1] : null;
						if (value && value.value)
							attempts = Number(value.value);
						const text = items.get('BODY');
						if (text && text.value)
							body = Buffer.from(text.value);
					},
				},
			},
		);
		response.next();
		return { body: body.toString('utf8'), attempts };
	}

	// Expunges one job that this worker marked \Deleted (UIDPLUS).
	async expunge(uid) {
		const response = await this.client.exec('UID EXPUNGE', [{ type: 'SEQUENCE', value: String(uid) }]);
		response.next();
	}

	// Waits with IDLE until the queue changes, IDLE_SECONDS pass or a signal arrives.
	async idle() {
		if (this.changed || this.stopping)
			return; // a change reported with the last search's answer: search again now
		const timer = setTimeout(() => this.wake(), IDLE_SECONDS * 1000);
		this.idling = this.client.idle();
		try {
			await this.idling;
			await this.breaking;
		} finally {
			clearTimeout(timer);
			this.idling = null;
			this.breaking = null;
		}
		if (this.failure)
			throw this.failure;
	}

	// The job itself: prints it; a body with the word "fail" stands for a failing job.
	process(uid, body) {
		console.log(`job ${uid}: ${body.trim()}`);
		return !/\bfail\b/.test(body);
	}

	// Reads, processes and acks or releases one claimed job.
	async handle(uid, receipt) {
		const { body, attempts } = await this.read(uid);
		if (this.process(uid, body)) {
			// Ack: a conditional \Deleted against the receipt, then expunge only this job.
			if ((await this.conditionalStore(uid, receipt, '+FLAGS.SILENT', ['\\Deleted'])) === null) {
				console.log(`job ${uid}: lost before the ack (lease expired)`);
				return;
			}
			await this.expunge(uid);
			console.log(`job ${uid}: acked`);
		} else {
			// Release: the job is ready again at once for another attempt; after its last
			// attempt (the queue's max-attempts) the server moves it to "<queue>/dead".
			await this.conditionalStore(uid, receipt, '-FLAGS.SILENT', ['$Claimed']);
			console.log(`job ${uid}: failed, released after attempt ${attempts}`);
		}
	}

	// Claims and handles jobs until stopped, the queue is empty (once) or maxJobs are done.
	async run(once, maxJobs) {
		let done = 0;
		while (!this.stopping && (maxJobs === undefined || done < maxJobs)) {
			const job = await this.claim();
			if (job) {
				await this.handle(job.uid, job.receipt);
				done++;
			} else if (once) {
				break;
			} else {
				await this.idle();
			}
		}
		await this.client.logout();
		return done;
	}

	// Stops after the job in hand; ends a running IDLE at once.
	stop() {
		this.stopping = true;
		this.wake();
	}
}

const USAGE = 'usage: worker.js [--host HOST] [--port PORT] --user USER --password PASSWORD ' +
	'--queue QUEUE [--once] [--max-jobs N]';

// The command line as worker options; throws a usage message when it is wrong.
function options(argv) {
	const { values } = parseArgs({
		args: argv,
		options: {
			host: { type: 'string', default: '127.0.0.1' },
			port: { type: 'string', default: '1143' },
			user: { type: 'string' },
			password: { type: 'string' },
			queue: { type: 'string' },
			once: { type: 'boolean', default: false },
			'max-jobs': { type: 'string' },
		},
	});
	const port = Number(values.port);
	const maxJobs = values['max-jobs'] === undefined ? undefined : Number(values['max-jobs']);
	if (!values.user || values.password === undefined || !values.queue)
		throw new Error('--user, --password and --queue are required');
	if (!Number.isInteger(port) || port < 1 || port > 65535)
		throw new Error(`bad --port: ${values.port}`);
	if (maxJobs !== undefined && (!Number.isInteger(maxJobs) || maxJobs < 0))
		throw new Error(`bad --max-jobs: ${values['max-jobs']}`);
	return { ...values, port, maxJobs };
}

async function main() {
	let opts;
	if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
		console.log(USAGE);
		return 0;
	}
	try {
		opts = options(process.argv.slice(2));
	} catch (err) {
		console.error(`worker.js: ${err.message}\n${USAGE}`);
		return 2;
	}
	const worker = new Worker(opts);
	process.on('SIGTERM', () => worker.stop());
	process.on('SIGINT', () => worker.stop());
	try {
		await worker.open();
		const done = await worker.run(opts.once, opts.maxJobs);
		console.log(`handled ${done} job${done === 1 ? '' : 's'}`);
		return 0;
	} catch (err) {
		console.error(`worker.js: ${errorText(err)}`);
		worker.client.close();
		return 1;
	}
}

// Run as a program; imported (as the integration test does), it only exports.
if (isMain(import.meta.url))
	process.exitCode = await main();
