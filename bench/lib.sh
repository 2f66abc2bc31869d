# bench/lib.sh: sourced by the benchmark scripts that start servers (cluster.sh, suite.sh,
# scale.sh).
#
#   stop_processes PID...   SIGTERM (a leader hands leadership over and the ledger closes
#                           cleanly), up to 10 s for them to go, then SIGKILL; reaps them.
#                           Empty arguments and processes already gone are fine; never fails.
stop_processes() {
    local p live=()
    for p in "$@"; do [ -n "$p" ] && live+=("$p"); done
    [ ${#live[@]} -gt 0 ] || return 0
    kill -TERM "${live[@]}" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "${live[@]}" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "${live[@]}" 2>/dev/null || true
    wait "${live[@]}" 2>/dev/null || true
    return 0
}
