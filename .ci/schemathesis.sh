#!/usr/bin/env bash
# Fuzzes a real `creditgate serve` with schemathesis against each OpenAPI
# document it serves (one per dialect: Rynjer, OpenAI, AgentName,
# KiwiWhale): every check, every phase (examples, coverage, fuzzing,
# stateful links from generate to poll and cancel). Any finding fails. The server runs on a temporary database and a loopback port the
# kernel picks; schemathesis comes from PyPI at a pinned version into a
# throwaway venv. Usage: .ci/schemathesis.sh [path/to/creditgate]
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
# Test cases per operation and phase, and the budget of the whole run:
# enough to reach every operation and the stateful links, small enough to
# keep CI within a few minutes.
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-40}"
MAX_TIME_SECS="${SCHEMATHESIS_MAX_TIME_SECS:-120}"

# shellcheck source=serve-lib.sh
source .ci/serve-lib.sh
prepare_serve "${1:-}"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"

# No rate limit: schemathesis sends hundreds of requests a second.
# Self-registration on (unlimited per address) so KiwiWhale's register
# route is exercised, not only its refusal.
start_serve --rate-limit-per-sec 0 --self-registration --registrations-per-hour 0 \
    --poll-interval-ms 20 --workers 2

# A second, not active, price version: requests may pin it, and the
# document has a schema per model of each.
"$bin" prices import fixtures/catalogs/kiwiwhale.json >/dev/null
# An account with credits for every job schemathesis submits, and an admin
# key (admin implies every product scope, and reaches bind too).
account="$("$bin" --json accounts create --name schemathesis | json_field id)"
"$bin" credits grant --account "$account" --amount 1000000000 --memo schemathesis >/dev/null
key="$("$bin" --json keys create --account "$account" --name schemathesis --scope admin | json_field key)"

status=0
# From the temporary directory: schemathesis keeps a cache where it runs.
# Each dialect's document in turn: Rynjer's (the longest budget), then
# OpenAI's, AgentName's and KiwiWhale's. DOCUMENTS narrows the run.
config="$PWD/.ci/schemathesis.toml"
for document in ${DOCUMENTS:-agent openai agentname kiwiwhale}; do
    budget="$MAX_TIME_SECS"
    [[ "$document" == agent ]] || budget=$(( MAX_TIME_SECS / 2 ))
    echo "--- schemathesis: $base/$document/openapi.json (at most $budget s)"
    (cd "$work" && "$work/venv/bin/st" --config-file "$config" run "$base/$document/openapi.json" \
        --checks all \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "$MAX_EXAMPLES" \
        --max-time "$budget" \
        --request-timeout 10 \
        --seed "${SCHEMATHESIS_SEED:-1}" \
        --header "Authorization: Bearer $key" \
        --report junit --report-dir "$work/report-$document") || status=$?
done

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "creditgate serve died during the run" >&2
    status=1
fi
if [[ "$status" != 0 ]]; then
    echo "--- the last lines creditgate serve wrote to stderr:" >&2
    tail -n 40 "$work/serve.err" >&2
fi
"$bin" ledger verify || status=1
exit "$status"
