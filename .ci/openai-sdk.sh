#!/usr/bin/env bash
# Runs the official `openai` Python package (pinned, from PyPI into a
# throwaway venv) against a real `creditgate serve` on the fixture
# provider (.ci/openai_sdk.py), then `ledger verify`. The server runs on a
# temporary database and a loopback port the kernel picks.
# Usage: .ci/openai-sdk.sh [path/to/creditgate]
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAI_VERSION=1.109.1

# shellcheck source=serve-lib.sh
source .ci/serve-lib.sh
prepare_serve "${1:-}"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION"

start_serve --poll-interval-ms 20

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
