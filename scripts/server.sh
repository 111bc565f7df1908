#!/usr/bin/env bash
# A real local Prefect server, the process work pool, the deployments of prefect.yaml and a worker.
#
#   scripts/server.sh start            server + work pool + deploy --all + worker (what `make server` runs)
#   scripts/server.sh stop             stop the worker and the server by their recorded process ids
#   scripts/server.sh status           which of them run, and the UI address
#   scripts/server.sh serve | pool | deploy [NAME...] | worker    the steps of `start`, one at a time
#
# Settings (environment): PREFECT_HOME (default .prefect, from prefect.toml: the server's SQLite
# database, and here the logs and process ids under run/), PREFECT_SERVER_PORT (default 4200),
# PREFECT_SERVER_HOST (default 127.0.0.1: loopback only), WORK_POOL (default local-process, the pool
# prefect.yaml names). The rest (no telemetry, log levels) is prefect.toml's, read from this folder.
# Each process runs in its own session, so `stop` ends it with everything it started. Not
# `prefect server start --background`: it pipes the server's output to the command, which returns
# at once, so the server's log is lost.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

HOST="${PREFECT_SERVER_HOST:-127.0.0.1}"
PORT="${PREFECT_SERVER_PORT:-4200}"
POOL="${WORK_POOL:-local-process}"
PREFECT="$ROOT/.venv/bin/prefect"
export PREFECT_API_URL="http://$HOST:$PORT/api"
RUN_DIR="${PREFECT_HOME:-$ROOT/.prefect}/run"
mkdir -p "$RUN_DIR"

alive() {  # alive PID: the process exists and is not a zombie waiting to be reaped
    local state; state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ -n "$state" && "$state" != Z* ]]
}

running() {  # running NAME: the recorded process of NAME is alive
    [[ -f "$RUN_DIR/$1.pid" ]] && alive "$(cat "$RUN_DIR/$1.pid")"
}

launch() {  # launch NAME COMMAND...: start in a new session, log and record its process id
    local name=$1; shift
    if running "$name"; then echo "$name already running (pid $(cat "$RUN_DIR/$name.pid"))"; return; fi
    setsid "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
    echo "$name started (pid $!, log $RUN_DIR/$name.log)"
}

serve() {
    if ! running server && curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1; then
        echo "something else already answers on $HOST:$PORT; choose another PREFECT_SERVER_PORT" >&2
        exit 1
    fi
    launch server "$PREFECT" server start --host "$HOST" --port "$PORT"
    for _ in $(seq 1 240); do
        if curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1; then
            echo "Prefect server ready: UI http://$HOST:$PORT  API $PREFECT_API_URL"
            return
        fi
        running server || { cat "$RUN_DIR/server.log" >&2; echo "server exited" >&2; exit 1; }
        sleep 0.25
    done
    echo "server did not answer within 60 s; see $RUN_DIR/server.log" >&2
    exit 1
}

pool() {
    "$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1 || "$PREFECT" work-pool create "$POOL" --type process
}

deploy() {  # deploy [NAME...]: the named deployments of prefect.yaml, or all of them
    if (($#)); then
        local args=(); for name in "$@"; do args+=(--name "$name"); done
        "$PREFECT" --no-prompt deploy "${args[@]}"
    else
        "$PREFECT" --no-prompt deploy --all
    fi
}

worker() {
    launch worker "$PREFECT" worker start --pool "$POOL" --type process
}

stop() {  # interrupt each recorded process's session (worker first); KILL what is left after 10 s
    # Prefect's CLI answers the first SIGINT by forwarding it, which an idle worker may ignore; a
    # second SIGINT makes it exit. So interrupt every 2 s until the process is gone.
    for name in worker server; do
        running "$name" || { rm -f "$RUN_DIR/$name.pid"; continue; }
        local pid; pid=$(cat "$RUN_DIR/$name.pid")
        for i in $(seq 0 39); do
            alive "$pid" || break
            ((i % 8)) || kill -INT -- "-$pid" 2>/dev/null || true
            sleep 0.25
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$RUN_DIR/$name.pid"
        echo "$name stopped (pid $pid)"
    done
}

status() {
    for name in server worker; do
        if running "$name"; then echo "$name: running (pid $(cat "$RUN_DIR/$name.pid"))"; else echo "$name: stopped"; fi
    done
    echo "UI: http://$HOST:$PORT"
}

case "${1:-}" in
    start) serve; pool; deploy; worker ;;
    serve|pool|worker|stop|status) "$1" ;;
    deploy) shift; deploy "$@" ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
esac
