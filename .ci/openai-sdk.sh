#!/usr/bin/env bash
# Runs the official `openai` Python package (pinned, from PyPI into a
# throwaway venv) against a real `creditgate serve` on the fixture
# provider (.ci/openai_sdk.py), then `ledger verify`. The server runs on a
# temporary database and a loopback port the kernel picks.
# Usage: .ci/openai-sdk.sh [path/to/creditgate]
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAI_VERSION=1.109.1

bin="${1:-}"
if [[ -z "$bin" ]]; then
    cargo build --locked --quiet -p creditgate-appliance
    bin="target/debug/creditgate"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION"

export CREDITGATE_DB="$work/creditgate.db"
"$bin" serve --listen 127.0.0.1:0 --poll-interval-ms 20 >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
base=""
for _ in $(seq 1 100); do
    base="$(sed -n 's/^creditgate listening on \(http:\/\/[^ ]*\)$/\1/p' "$work/serve.out")"
    [[ -n "$base" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 2; }
    sleep 0.1
done
[[ -n "$base" ]] || { echo "serve did not start" >&2; cat "$work/serve.err" >&2; exit 2; }

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
account="$("$bin" --json accounts create --name openai-sdk | json_field id)"
"$bin" credits grant --account "$account" --amount 1000 --memo openai-sdk >/dev/null
key="$("$bin" --json keys create --account "$account" --name openai-sdk --scope admin | json_field key)"
poor="$("$bin" --json accounts create --name openai-sdk-empty | json_field id)"
poor_key="$("$bin" --json keys create --account "$poor" --name empty --scope admin | json_field key)"

status=0
"$work/venv/bin/python" .ci/openai_sdk.py "$base" "$key" "$poor_key" || status=$?
if [[ "$status" != 0 ]]; then
    echo "--- the last lines creditgate serve wrote to stderr:" >&2
    tail -n 40 "$work/serve.err" >&2
fi
"$bin" ledger verify >/dev/null || status=1
exit "$status"
