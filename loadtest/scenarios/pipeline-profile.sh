#!/usr/bin/env bash
# Where the embedded pipeline's CPU goes, per event: an in-process
# `tracking loadgen` run (fresh data dir) with `perf record --call-graph
# dwarf` attached for PERF_SECONDS once it is under load, then
# loadtest/perf-summary.py: the share of each part of the pipeline (the
# store's write, applies and background work, the command log, consumers,
# aggregates, actors, the runtime), its CPU microseconds per persisted
# event, and the rate two cores would allow if the store, or everything
# but the store, cost nothing; with RUNS above 1, each figure's median
# over the runs last. Needs `perf` (linux-tools).
#
#   loadtest/scenarios/pipeline-profile.sh   RATE=30000 USERS=100000 DURATION=30s WAIT=8 PERF_SECONDS=10 RUNS=1
#   LOADGEN_FLAGS="--max-live-aggregates 500"   (more `tracking loadgen` flags, e.g. to compare settings)
source "$(dirname "$0")/../lib.sh"
build
command -v perf >/dev/null 2>&1 || { echo "perf not found (install linux-tools for this kernel)" >&2; exit 1; }
RATE=${RATE:-30000}
USERS=${USERS:-100000}
DURATION=${DURATION:-30s}
WAIT=${WAIT:-8}
SECONDS_REC=${PERF_SECONDS:-10}
RUNS=${RUNS:-1}
OUT=$RESULTS/pipeline-profile; mkdir -p "$OUT"
for run in $(seq 1 "$RUNS"); do
  data=$OUT/data-$run; rm -rf "$data"
  report=$OUT/run-$run.json
  "$BIN" loadgen --rate "$RATE" --duration "$DURATION" --users "$USERS" --seed "$run" --data-dir "$data" \
    --drain-timeout 120s --report "$report" ${LOADGEN_FLAGS:-} >"$OUT/run-$run.log" 2>&1 &
  gen=$!
  sleep "$WAIT"
  if ! perf record -F 99 --call-graph dwarf -p "$gen" -o "$OUT/perf-$run.data" -- sleep "$SECONDS_REC" \
    >/dev/null 2>"$OUT/perf-$run.err"; then
    echo "perf record failed (perf_event_paranoid? see $OUT/perf-$run.err):" >&2
    tail -3 "$OUT/perf-$run.err" >&2
    kill "$gen" 2>/dev/null || true
    exit 1
  fi
  wait "$gen" || { echo "run $run failed; log: $OUT/run-$run.log" >&2; exit 1; }
  rm -rf "$data"
  # Persisted events/s during the recording: the run's timeline seconds it
  # covers (second 1 starts about when the process does, after the store
  # opens, so this is within a second of the window).
  rate=$(python3 - "$report" "$WAIT" "$SECONDS_REC" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); start, n = int(sys.argv[2]), int(sys.argv[3])
got = [t["persisted"] for t in r["timeline"] if start <= t["t"] < start + n]
print(sum(got) / len(got) if got else 0)
PY
)
  echo "== run $run: $RATE/s offered, $USERS users; $(grep -E '^check' "$OUT/run-$run.log" || true)"
  perf script -i "$OUT/perf-$run.data" 2>/dev/null |
    python3 "$ROOT/loadtest/perf-summary.py" --hz 99 --seconds "$SECONDS_REC" --rate "$rate" \
      --json "$OUT/summary-$run.json" | tee "$OUT/summary-$run.txt"
done
if [ "$RUNS" -gt 1 ]; then
  echo "== each figure's median over the $RUNS runs"
  python3 "$ROOT/loadtest/perf-summary.py" --median $(seq -f "$OUT/summary-%g.json" 1 "$RUNS")
fi
echo "reports: $OUT"
