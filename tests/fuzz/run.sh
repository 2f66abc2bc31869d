#!/bin/bash
# run.sh: run the libFuzzer targets (tests/fuzz/README.md).
#
#   bash tests/fuzz/run.sh BUILD SECONDS keep    each target SECONDS s, new inputs kept in
#                                                tests/fuzz/corpus/TARGET (commit them)
#   bash tests/fuzz/run.sh BUILD SECONDS smoke   each target SECONDS s on a scratch copy of the
#                                                corpus (make test: the tree is not touched)
# The corpus starts from the protocol test vectors (tests/common/wire_vectors.txt), written out
# as one file per vector. A crash leaves its input in BUILD/crash-* and fails the run.
set -euo pipefail
build=$1 seconds=$2 mode=$3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$build/seeds/frame" "$build/seeds/batch" "$build/seeds/front"

# One seed file per test vector: the hex of its "frame" lines.
awk -v out="$build/seeds/frame" '
  /^vector / { name = $2; hex = "" }
  /^frame /  { for (i = 2; i <= NF; i++) hex = hex "\\x" $i }
  /^end/     { printf "%s", hex > (out "/" name ".hex"); close(out "/" name ".hex") }
' "$here/../common/wire_vectors.txt"
for f in "$build"/seeds/frame/*.hex; do
  printf '%b' "$(cat "$f")" > "${f%.hex}"; rm -f "$f"
  # The postings of a vector are batch seeds too (mode byte 1: steered toward live state).
  { printf '\x01'; tail -c +65 "${f%.hex}"; } > "$build/seeds/batch/$(basename "${f%.hex}")"
done
# The request handler reads a stream of frames: each vector alone, and the valid requests one
# after another (a session's story: register, post, reads, status, ledger).
cp "$build"/seeds/frame/* "$build/seeds/front/"
awk '/^vector / { name = $2 } /^direction request/ { req[name] = 1 }
     /^verdict NONE/ && req[name] { print name }' "$here/../common/wire_vectors.txt" |
  while read -r v; do cat "$build/seeds/frame/$v"; done > "$build/seeds/front/requests"

fail=0
for t in frame batch front; do
  kept="$here/corpus/$t"
  mkdir -p "$kept"
  if [ "$mode" = smoke ]; then
    corpus=$(mktemp -d "$build/corpus-$t.XXXXXX"); cp -r "$kept/." "$corpus/" 2>/dev/null || true
  else
    corpus=$kept
  fi
  printf 'fuzz_%-8s %4s s ' "$t" "$seconds"
  if out=$("$build/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
            -artifact_prefix="$build/" -print_final_stats=1 "$corpus" "$build/seeds/$t" 2>&1); then
    echo "ok: $(echo "$out" | grep -o 'stat::number_of_executed_units: *[0-9]*' | grep -o '[0-9]*$') inputs, corpus $(ls "$corpus" | wc -l)"
  else
    echo FAIL; echo "$out" | tail -40; fail=1
  fi
  [ "$mode" = smoke ] && rm -rf "$corpus"
done
exit $fail
