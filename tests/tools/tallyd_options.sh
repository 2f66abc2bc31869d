#!/usr/bin/env bash
# tallyd_options.sh: tallyd refuses option values it cannot honour, with its usage and exit 2,
# before it opens anything (nothing is created in the data directory), from the command line and
# from a --config file alike; --help names every option. Cases: --commit-ms (0..1000; -1, 1001
# and a word are refused), --clock, --io. And an address that is taken: exit 3 (cannot start),
# also under the sanitizers (what main allocated is released, so the leak check keeps 3).
#
# Run: TALLY_BUILD=build bash tests/tools/tallyd_options.sh   (exit 0 pass, 1 fail)
set -u
BUILD=${TALLY_BUILD:-build}
TALLYD=$BUILD/tallyd
[ -x "$TALLYD" ] || { echo "tallyd_options.sh: $TALLYD is not built" >&2; exit 1; }
dir=$(mktemp -d /tmp/tally-test-options.XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail=0

refused() { # refused WHAT ARGS...: exit 2, the usage on stderr, no data directory made
    local what=$1 rc=0
    shift
    out=$(timeout 10 "$TALLYD" --id 1 --dir "$dir/data" "$@" 2>&1 >/dev/null) || rc=$?
    if [ "$rc" != 2 ] || [[ $out != *usage:* ]] || [ -e "$dir/data" ]; then
        echo "FAIL: $what: exit $rc (want 2 with the usage), data dir made: $([ -e "$dir/data" ] && echo yes || echo no)"
        fail=1
    fi
    rm -rf "$dir/data"
}

refused "--commit-ms -1" --commit-ms -1
refused "--commit-ms 1001" --commit-ms 1001
refused "--commit-ms soon" --commit-ms soon
refused "--commit-ms 20ms" --commit-ms 20ms
refused "--clock sundial" --clock sundial
refused "--io carrier-pigeon" --io carrier-pigeon
printf 'id 1\ndir %s/data\ncommit-ms 5000\n' "$dir" >"$dir/bad.conf"
rc=0
timeout 10 "$TALLYD" --config "$dir/bad.conf" >/dev/null 2>&1 || rc=$?
if [ "$rc" != 2 ] || [ -e "$dir/data" ]; then
    echo "FAIL: commit-ms 5000 in a config file: exit $rc (want 2), nothing made"
    fail=1
fi

# An address another process holds: exit 3 (cannot start), the address named in the log. A
# one-voter tallyd holds the port; a second one wants it for its clients, then a third for its
# metrics endpoint. Ports below the ephemeral range, from this shell's pid.
port=$((24000 + ($$ % 400) * 20))
"$TALLYD" --id 1 --dir "$dir/holder" --peer "1,127.0.0.1:$((port + 10)),127.0.0.1:$port" \
    2>"$dir/holder.log" &
holder=$!
for _ in $(seq 1 100); do grep -q 'event=listening' "$dir/holder.log" && break; sleep 0.1; done
taken() { # taken WHAT ARGS...: exit 3 and an error naming the port
    local what=$1 rc=0
    shift
    out=$(timeout 20 "$TALLYD" --id 1 --dir "$dir/second" "$@" 2>&1 >/dev/null) || rc=$?
    if [ "$rc" != 3 ] || [[ $out != *"level=error"*"127.0.0.1:$port"*"in use"* ]]; then
        echo "FAIL: $what: exit $rc (want 3 and the address in an error line): $out" | head -5
        fail=1
    fi
    rm -rf "$dir/second"
}
taken "client address in use" --peer "1,127.0.0.1:$((port + 11)),127.0.0.1:$port"
taken "metrics address in use" --peer "1,127.0.0.1:$((port + 12)),127.0.0.1:$((port + 2))" \
    --metrics "127.0.0.1:$port"
kill -TERM $holder
wait $holder || { echo "FAIL: the holder did not stop cleanly"; fail=1; }

help=$("$TALLYD" --help 2>&1)
for opt in --commit-ms --clock --io --snapshot-trailing --metrics; do
    [[ $help == *"$opt"* ]] || { echo "FAIL: --help does not name $opt"; fail=1; }
done
exit $fail
