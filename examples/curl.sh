#!/usr/bin/env bash
# One job's life over imapq's HTTP API with nothing but curl, sed and grep:
# create a queue, enqueue a JSON job, claim it, ack it with its receipt, print the queue's stats.
#
#   curl.sh [BASE_URL] [TOKEN]
#
# BASE_URL defaults to http://127.0.0.1:8080 and TOKEN to the token= line of
# ./imapq-data/credentials (what `make run` creates). QUEUE (default "example") names the queue.
# Any failed step (a refused request, an unreachable server) stops the script with a non-zero
# status and the server's error on stderr. The API is described in docs/http.md.
set -euo pipefail

BASE=${1:-http://127.0.0.1:8080}
TOKEN=${2:-}
QUEUE=${QUEUE:-example}
if [ -z "$TOKEN" ]; then
	if [ ! -r imapq-data/credentials ]; then
		echo "curl.sh: no TOKEN given and no ./imapq-data/credentials to read it from" >&2
		exit 2
	fi
	TOKEN=$(sed -n 's/^token=//p' imapq-data/credentials)
fi

# One request with the bearer token; prints the reply. On an HTTP error status (or no answer)
# it prints the server's JSON error to stderr and fails, which stops the script.
api() {
	local out
	if ! out=$(curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" "$@"); then
		echo "curl.sh: request failed: curl $*" >&2
		[ -z "$out" ] || echo "$out" >&2
		return 1
	fi
	printf '%s\n' "$out"
}

# The first value of a JSON string field: field receipt '{"receipt":"17-5"}' prints 17-5.
# (Fine for the flat replies below; use a JSON parser for anything nested or escaped.)
field() {
	printf '%s' "$2" | { grep -o "\"$1\":\"[^\"]*\"" || true; } |
		sed -n '1s/^.*:"\(.*\)"$/\1/p'
}

echo "== create queue $QUEUE (lease 60 s, 3 attempts)"
api -X PUT "$BASE/v1/queues/$QUEUE" -d '{"lease":60,"max_attempts":3}'

echo "== enqueue a JSON job"
reply=$(api -X POST -H 'Content-Type: application/json' "$BASE/v1/queues/$QUEUE/messages" \
	-d '{"task":"resize","photo":42}')
echo "$reply"
id=$(field id "$reply")

echo "== claim it (waiting up to 5 s)"
reply=$(api -X POST "$BASE/v1/queues/$QUEUE/claims" -d '{"max":1,"wait":5}')
echo "$reply"
# With max 1 the reply holds one job; its id and receipt come first in it.
claimed=$(field id "$reply")
receipt=$(field receipt "$reply")
if [ -z "$receipt" ]; then
	echo "curl.sh: the claim returned no job" >&2
	exit 1
fi
if [ "$claimed" != "$id" ]; then
	echo "curl.sh: claimed job $claimed, not the job $id just enqueued (the queue had others)"
fi

echo "== ack job $claimed with receipt $receipt"
status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
	"$BASE/v1/queues/$QUEUE/messages/$claimed/ack" -d "{\"receipt\":\"$receipt\"}")
echo "$status"
if [ "$status" != 204 ]; then
	echo "curl.sh: the ack was answered $status (409: the lease expired; 404: the job is gone)" >&2
	exit 1
fi

echo "== stats"
api "$BASE/v1/queues/$QUEUE" | grep -o '"stats":{[^}]*}'
