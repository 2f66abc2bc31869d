#!/usr/bin/env bash
# cluster.sh: what `make run` starts: a local 3-replica tally cluster on loopback, in the
# foreground, data under var/cluster. Ctrl-C (or SIGTERM) stops all three cleanly (a leader
# hands leadership over first). Usage: tools/cluster.sh [BUILD_DIR]
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
mkdir -p "$DIR"
pids=()
for i in 1 2 3; do
    "$B/tallyd" --id "$i" --dir "$DIR/r$i" --metrics "127.0.0.1:760$i" "${PEERS[@]}" \
        2> >(sed -u "s/^/[r$i] /" >&2) &
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
