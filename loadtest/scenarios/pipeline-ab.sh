#!/usr/bin/env bash
# A/B of two builds of the embedded pipeline: ROUNDS rounds of
# pipeline-profile.sh (RUNS=1 each), the builds alternating (A, B, A, B,
# ...) so that both see the same stretch of a noisy machine. Prints each
# run's CPU per event without the generator, then each build's medians
# (perf-summary.py --median: the total and every part). A setting can be
# compared on one build: ENV_A / ENV_B are passed to each side's run
# (e.g. ENV_B="MIMALLOC_PURGE_DELAY=50"). Last, each build's totals
# divided by the generator's own µs in the same run (a rough gauge of
# the machine's speed, as in pipeline-steady.sh).
#
#   BIN_A=old/tracking BIN_B=new/tracking loadtest/scenarios/pipeline-ab.sh
#                                      ROUNDS=3, and pipeline-profile.sh's RATE, USERS, ...
source "$(dirname "$0")/../lib.sh"
: "${BIN_A:?BIN_A: the first build's tracking binary}" "${BIN_B:?BIN_B: the second build's}"
ROUNDS=${ROUNDS:-3}
OUT=$RESULTS/pipeline-ab; mkdir -p "$OUT"
one() { # one SIDE ROUND BINARY ENV
  local dir=$OUT/$1-$2
  rm -rf "$dir"
  env $4 RESULTS="$dir" TRACKING_BIN="$3" RUNS=1 "$ROOT/loadtest/scenarios/pipeline-profile.sh" >"$dir.txt" 2>&1 ||
    { echo "run $1-$2 failed; see $dir.txt" >&2; exit 1; }
  cp "$dir/pipeline-profile/summary-1.json" "$OUT/$1-$2.json"
  echo "round $2 $1: $(grep -m1 'without the generator' "$dir.txt")"
}
for r in $(seq 1 "$ROUNDS"); do
  one a "$r" "$BIN_A" "${ENV_A:-}"
  one b "$r" "$BIN_B" "${ENV_B:-}"
done
for side in a b; do
  echo "== $side: medians of $ROUNDS runs"
  python3 "$ROOT/loadtest/perf-summary.py" --median $(seq -f "$OUT/$side-%g.json" 1 "$ROUNDS")
done
# The in-process generator runs the same code in both builds, so its own
# µs per event follow the machine's speed, roughly: the pipeline waits on
# memory far more than the generator, and neighbours' load slows the two
# unequally. The ratio is printed beside the interleaved pairs above, which
# remain the comparison of the builds.
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def ratio(side, r):
    j = json.load(open(f"{out}/{side}-{r}.json"))
    gen = next(v["us"] for k, v in j["parts"].items() if k.startswith("load generator"))
    return j["us_without_generator"] / gen if gen else float("nan")
pairs = [(ratio("a", r), ratio("b", r)) for r in range(1, rounds + 1)]
lower = sum(b < a for a, b in pairs)
print("== total / the generator's own µs, per run (a rough gauge of the machine's speed)")
for side, i in (("a", 0), ("b", 1)):
    vals = [p[i] for p in pairs]
    print(f"{side}: median {statistics.median(vals):.2f} ({min(vals):.2f}-{max(vals):.2f})")
print(f"b lower than a in {lower} of {rounds} pairs")
PY
echo "reports: $OUT"
