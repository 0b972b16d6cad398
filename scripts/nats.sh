#!/usr/bin/env bash
# A nats-server with JetStream on loopback, for the tests: Debian's nats-server
# (installed with apt-get when missing), a temporary file store, free ports.
#
#   scripts/nats.sh start     # install if missing, start, wait until JetStream is up
#   scripts/nats.sh stop      # kill it and remove its store
#   scripts/nats.sh restart   # kill it (SIGKILL) and start it again on the same
#                             # ports with the same store (for outage/restart tests)
#   scripts/nats.sh status    # exit 0 when running and healthy
#   scripts/nats.sh pid       # prints the server's pid
#   scripts/nats.sh env       # prints `export NATS_URL=nats://127.0.0.1:<port>`
#
# Environment:
#   CEBUS_CACHE  cache folder (default <repo>/.cache)
#   NATS_STATE   state folder (default $CEBUS_CACHE/nats/run): pid, ports, store, log
#   NATS_SERVER_VERSION  e.g. v2.15.2: instead of Debian's, that release built
#                with `go install` from the Go module proxy into
#                $CEBUS_CACHE/nats-server/<version> (for benchmarks: Debian
#                bookworm ships 2.9.10, from 2022; the tests use Debian's)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CEBUS_CACHE:-$repo/.cache}"
state="${NATS_STATE:-$cache/nats/run}"
state_file="$state/nats.env"

say() { printf 'nats.sh: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ensure_nats_server() {
    if [[ -n "${NATS_SERVER_VERSION:-}" ]]; then
        local bin="$cache/nats-server/$NATS_SERVER_VERSION"
        if [[ ! -x "$bin/nats-server" ]]; then
            command -v go >/dev/null || die "NATS_SERVER_VERSION needs go on PATH to build nats-server"
            say "building nats-server $NATS_SERVER_VERSION with go install"
            mkdir -p "$bin"
            GOBIN="$bin" go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION" >&2 ||
                die "could not build nats-server $NATS_SERVER_VERSION"
        fi
        PATH="$bin:$PATH"
        return 0
    fi
    command -v nats-server >/dev/null && return 0
    command -v apt-get >/dev/null || die "nats-server not found and no apt-get to install it"
    say "installing Debian's nats-server"
    (apt-get install -y -qq nats-server >/dev/null 2>&1 ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; }) >&2 ||
        die "could not install nats-server"
    command -v nats-server >/dev/null || die "nats-server still not on PATH after apt-get"
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

load_state() {
    NATS_PID="" NATS_PORT="" NATS_MONITOR_PORT=""
    # shellcheck disable=SC1090
    [[ -f "$state_file" ]] && source "$state_file"
    return 0
}

write_state() {
    cat >"$state_file" <<EOF
NATS_PID=$NATS_PID
NATS_PORT=$NATS_PORT
NATS_MONITOR_PORT=$NATS_MONITOR_PORT
EOF
}

# Healthy with JetStream enabled (the monitoring endpoint of nats-server >= 2.9).
healthy() {
    [[ -n "$NATS_MONITOR_PORT" ]] &&
        curl -fsS --max-time 2 "http://127.0.0.1:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" >/dev/null 2>&1
}

kill_pid() {
    local pid="$1" i
    pid_alive "$pid" || return 0
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

# Starts nats-server on the ports in the state and waits until JetStream is up.
launch() {
    local start=$SECONDS
    mkdir -p "$state/store"
    say "starting nats-server on 127.0.0.1:$NATS_PORT (monitoring $NATS_MONITOR_PORT)"
    # setsid: the server must not get the terminal's SIGINT meant for a test run.
    setsid nohup nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" \
        -sd "$state/store" -l "$state/nats.log" >"$state/stdout.log" 2>&1 </dev/null &
    NATS_PID=$!
    write_state
    local deadline=$((SECONDS + ${NATS_START_TIMEOUT:-30}))
    while ((SECONDS < deadline)); do
        if ! pid_alive "$NATS_PID"; then
            say "nats-server exited during startup:"
            tail -n 30 "$state/stdout.log" "$state/nats.log" >&2 2>/dev/null || true
            exit 1
        fi
        if healthy; then
            say "nats-server $(nats-server --version 2>/dev/null | awk '{print $NF}') ready on nats://127.0.0.1:$NATS_PORT (pid $NATS_PID, $((SECONDS - start))s)"
            return 0
        fi
        sleep 0.2
    done
    say "nats-server did not become healthy within ${NATS_START_TIMEOUT:-30}s"
    tail -n 30 "$state/nats.log" >&2 2>/dev/null || true
    kill_pid "$NATS_PID"
    exit 1
}

cmd_start() {
    load_state
    if pid_alive "$NATS_PID" && healthy; then
        say "already running on nats://127.0.0.1:$NATS_PORT (pid $NATS_PID)"
        return 0
    fi
    ensure_nats_server
    command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl)"
    kill_pid "$NATS_PID"
    rm -rf "$state"
    mkdir -p "$state"
    NATS_PORT="$(free_port)"
    NATS_MONITOR_PORT="$(free_port)"
    while [[ "$NATS_MONITOR_PORT" == "$NATS_PORT" ]]; do NATS_MONITOR_PORT="$(free_port)"; done
    launch
}

cmd_restart() {
    load_state
    [[ -n "$NATS_PORT" ]] || die "not started; run: $0 start"
    if pid_alive "$NATS_PID"; then
        kill -9 "$NATS_PID" 2>/dev/null || true
        while pid_alive "$NATS_PID"; do sleep 0.1; done
    fi
    ensure_nats_server
    launch
}

cmd_stop() {
    load_state
    if pid_alive "$NATS_PID"; then
        say "stopping nats-server (pid $NATS_PID)"
        kill_pid "$NATS_PID"
    fi
    rm -rf "$state"
}

cmd_status() {
    load_state
    if pid_alive "$NATS_PID" && healthy; then
        echo "nats-server running on nats://127.0.0.1:$NATS_PORT (pid $NATS_PID)"
        return 0
    fi
    echo "nats-server not running"
    return 1
}

cmd_env() {
    load_state
    pid_alive "$NATS_PID" || die "not running; run: $0 start"
    echo "export NATS_URL=nats://127.0.0.1:$NATS_PORT"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_restart ;;
status) cmd_status ;;
env) cmd_env ;;
pid)
    load_state
    pid_alive "$NATS_PID" || die "not running"
    echo "$NATS_PID"
    ;;
*)
    echo "usage: $0 start|stop|restart|status|env|pid" >&2
    exit 2
    ;;
esac
