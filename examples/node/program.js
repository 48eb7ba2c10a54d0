// What producer.js and worker.js share as command-line programs.
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

// True when Node runs the module at moduleUrl (its import.meta.url) as its program rather than
// importing it.
export function isMain(moduleUrl) {
	try {
		return moduleUrl === pathToFileURL(realpathSync(process.argv[1])).href;
	} catch {
		return false; // no program file: "node -e" or the REPL
	}
}

// An error as one line, with the server's text when imapflow kept it.
export function errorText(err) {
	return err.responseText ? `${err.message}: ${err.responseText}` : err.message;
}
