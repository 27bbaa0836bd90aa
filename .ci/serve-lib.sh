# Sourced by the CI scripts that drive a real `creditgate serve`: builds
# the binary unless one is named, makes a temporary work directory
# (removed on exit, with the server stopped), and starts the server on a
# temporary database and a loopback port the kernel picks.
# After `start_serve ARGS...`: $bin, $work, $server_pid and $base are set,
# and CREDITGATE_DB names the database for the CLI.

prepare_serve() {
    bin="${1:-}"
    if [[ -z "$bin" ]]; then
        cargo build --locked --quiet -p creditgate-appliance
        bin="target/debug/creditgate"
    fi
    work="$(mktemp -d)"
    server_pid=""
    trap cleanup_serve EXIT
    export CREDITGATE_DB="$work/creditgate.db"
}

cleanup_serve() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}

start_serve() {
    "$bin" serve --listen 127.0.0.1:0 "$@" >"$work/serve.out" 2>"$work/serve.err" &
    server_pid=$!
    base=""
    for _ in $(seq 1 100); do
        base="$(sed -n 's/^creditgate listening on \(http:\/\/[^ ]*\)$/\1/p' "$work/serve.out")"
        [[ -n "$base" ]] && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 2; }
        sleep 0.1
    done
    [[ -n "$base" ]] || { echo "serve did not start" >&2; cat "$work/serve.err" >&2; exit 2; }
}

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
