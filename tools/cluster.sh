#!/usr/bin/env bash
# cluster.sh: what `make run` starts: a local 3-replica tally cluster on loopback, in the
# foreground, data under var/cluster. Ctrl-C (or SIGTERM) stops all three cleanly (a leader
# hands leadership over first). Usage: tools/cluster.sh [BUILD_DIR]
#
# Each replica runs under a small supervisor: one killed by SIGKILL (a failover drill, the OOM
# killer) is started again with the same flags after 200 ms, as systemd's Restart= would do; one
# that stops by itself (an exit code, or an abort after fail_stop) is left stopped, since its
# last log line must be read first (docs/OPERATIONS.md). TALLYD_ARGS gives flags to every
# replica; unset, a loopback cluster's timings: election timeout 300 ms, heartbeat 50 ms (a
# leader kill costs ~0.6 s of writes, docs/OPERATIONS.md "Failover drill"; tallyd's own
# defaults, 1,000 / 100 ms, are for networks with more jitter). TALLYD_ARGS="" gives those.
set -u
B=${1:-build}
DIR=${TALLY_CLUSTER_DIR:-var/cluster}
CLIENTS=127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403
PEERS=(--peer 1,127.0.0.1:7501,127.0.0.1:7401 --peer 2,127.0.0.1:7502,127.0.0.1:7402
       --peer 3,127.0.0.1:7503,127.0.0.1:7403)
if [ ! -x "$B/tallyd" ]; then
    echo "cluster.sh: $B/tallyd is not built (run make first)" >&2
    exit 3
fi
read -r -a EXTRA <<<"${TALLYD_ARGS---election-timeout 300 --heartbeat 50}"
mkdir -p "$DIR"
supervise() {
    local i=$1 child=0 rc
    trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM
    while :; do
        "$B/tallyd" --id "$i" --dir "$DIR/r$i" --metrics "127.0.0.1:760$i" "${PEERS[@]}" \
            ${EXTRA[@]+"${EXTRA[@]}"} &
        child=$!
        wait $child
        rc=$?
        if [ $rc -ne 137 ]; then
            [ $rc -eq 0 ] || echo "cluster.sh: replica $i exited with status $rc: not restarted" >&2
            exit $rc
        fi
        echo "cluster.sh: replica $i was killed (SIGKILL): starting it again" >&2
        sleep 0.2
    done
}
pids=()
for i in 1 2 3; do
    supervise "$i" 2> >(sed -u "s/^/[r$i] /" >&2) &
    pids+=($!)
done
stop() {
    trap - INT TERM
    echo "stopping the cluster..." >&2
    kill -TERM "${pids[@]}" 2>/dev/null
    wait "${pids[@]}" 2>/dev/null
    exit 0
}
trap stop INT TERM
cat <<TXT
A 3-replica tally cluster is running on loopback (data in $DIR).
  clients:  $CLIENTS
  metrics:  http://127.0.0.1:7601/metrics (7602, 7603; /health for the role)
  try:      $B/tally --cluster $CLIENTS status
            $B/tally --cluster $CLIENTS program create --program 1 --expiry year:1
            $B/tally --cluster $CLIENTS open --program 1 --member 42
            $B/tally --cluster $CLIENTS accrue --program 1 --member 42 --points 500
            $B/tally --cluster $CLIENTS --json account --program 1 --member 42
Ctrl-C stops all three.
TXT
wait "${pids[@]}"
