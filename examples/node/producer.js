#!/usr/bin/env node
// A producer for imapq on the imapflow IMAP client from npm: creates a queue when it is
// missing and enqueues jobs with IMAP APPEND.
//
//     node producer.js --host 127.0.0.1 --port 1143 --user demo --password PW --queue jobs
//                      [--count N] [BODY ...]
//
// Install once with `npm ci` in this folder. Every BODY argument is one job; without any,
// --count N jobs (10 unless given) are made with the bodies {"n": 0} to {"n": N-1}. A body that
// is valid JSON is sent as application/json, any other as text/plain. Each job is printed as
// "job UID: BODY", the UID being the job id the server reported (APPENDUID). A queue made here
// gets the server's default settings; change them over HTTP or with SETMETADATA.
import { parseArgs } from 'node:util';
import { ImapFlow } from 'imapflow';
import { errorText, isMain } from './program.js';

// The job as an RFC 5322 message: a short header and the body.
export function message(body, n) {
	let json = true;
	try {
		JSON.parse(body);
	} catch {
		json = false;
	}
	return [
		'From: imapq producer <producer@localhost>',
		`Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
		`Subject: job ${n}`,
		'MIME-Version: 1.0',
		`Content-Type: ${json ? 'application/json' : 'text/plain; charset=utf-8'}`,
		'',
		body,
	].join('\r\n');
}

// Connects, creates the queue when missing and appends every body: the jobs' UIDs in order.
export async function produce(options, bodies, print) {
	const client = new ImapFlow({
		host: options.host,
		port: options.port,
		secure: false,
		doSTARTTLS: false,
		auth: { user: options.user, pass: options.password },
		logger: false,
		disableAutoIdle: true,
		disableCompression: true,
	});
	let failure = null;
	client.on('error', (err) => {
		failure = err;
	});
	await client.connect();
	try {
		await client.mailboxCreate(options.queue); // an existing queue is fine (ALREADYEXISTS)
		const uids = [];
		for (const [n, body] of bodies.entries()) {
			const appended = await client.append(options.queue, message(body, n));
			if (!appended || !appended.uid)
				throw failure || new Error(`APPEND to ${options.queue} failed`);
			uids.push(appended.uid);
			print(`job ${appended.uid}: ${body}`);
		}
		await client.logout();
		return uids;
	} catch (err) {
		client.close();
		throw err;
	}
}

const USAGE = 'usage: producer.js [--host HOST] [--port PORT] --user USER --password PASSWORD ' +
	'--queue QUEUE [--count N] [BODY ...]';

// The command line as {options, bodies}; throws a usage message when it is wrong.
function commandLine(argv) {
	const { values, positionals } = parseArgs({
		args: argv,
		allowPositionals: true,
		options: {
			host: { type: 'string', default: '127.0.0.1' },
			port: { type: 'string', default: '1143' },
			user: { type: 'string' },
			password: { type: 'string' },
			queue: { type: 'string' },
			count: { type: 'string', default: '10' },
		},
	});
	const port = Number(values.port);
	const count = Number(values.count);
	if (!values.user || values.password === undefined || !values.queue)
		throw new Error('--user, --password and --queue are required');
	if (!Number.isInteger(port) || port < 1 || port > 65535)
		throw new Error(`bad --port: ${values.port}`);
	if (!Number.isInteger(count) || count < 0)
		throw new Error(`bad --count: ${values.count}`);
	const bodies = positionals.length ? positionals
		: Array.from({ length: count }, (_, n) => JSON.stringify({ n }));
	return { options: { ...values, port }, bodies };
}

async function main() {
	let line;
	if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
		console.log(USAGE);
		return 0;
	}
	try {
		line = commandLine(process.argv.slice(2));
	} catch (err) {
		console.error(`producer.js: ${err.message}\n${USAGE}`);
		return 2;
	}
	try {
		const uids = await produce(line.options, line.bodies, (text) => console.log(text));
		console.log(`enqueued ${uids.length} job${uids.length === 1 ? '' : 's'}`);
		return 0;
	} catch (err) {
		console.error(`producer.js: ${errorText(err)}`);
		return 1;
	}
}

// Run as a program; imported, it only exports.
if (isMain(import.meta.url))
	process.exitCode = await main();
