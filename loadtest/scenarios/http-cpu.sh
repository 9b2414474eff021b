#!/usr/bin/env bash
# CPU per command of the HTTP ingest path, per process: a fresh worker
# (embedded default) takes RATE commands/s over HTTP from the load
# generator for DURATION; the worker's and the generator's CPU time
# (utime + stime from /proc) divided by the commands acknowledged, medians
# of RUNS. With BIN_B set, the same runs for a second binary, interleaved
# (A, B, A, B, ...), so the machine's noise falls on both alike.
#
#   loadtest/scenarios/http-cpu.sh
#   BIN_A=/tmp/base/tracking BIN_B=/tmp/new/tracking RUNS=3 loadtest/scenarios/http-cpu.sh
#
# Env: RATE (4000), DURATION (20s), USERS (20000), CONNECTIONS (32), RUNS (3),
# LOADGEN_FLAGS (more `tracking loadgen` flags; above what the worker takes,
# `--max-drop-share 1`: the sends it cannot take are dropped, not failed).
#
# The HTTP bar (25,000/s accepted and persisted): each connection waits
# for its answer (a group commit of the log, about 2.8 ms under load), so
# 64 connections cannot offer much more than 23,000/s; 128 can.
#
#   RATE=40000 USERS=100000 CONNECTIONS=128 LOADGEN_FLAGS="--max-drop-share 1" loadtest/scenarios/http-cpu.sh
source "$(dirname "$0")/../lib.sh"
RATE=${RATE:-4000}; DURATION=${DURATION:-20s}; USERS=${USERS:-20000}
CONNECTIONS=${CONNECTIONS:-32}; RUNS=${RUNS:-3}
if [ -z "${BIN_A:-}" ]; then build; BIN_A=$BIN; fi
OUT=$RESULTS/http-cpu; mkdir -p "$OUT"
TICKS=$(getconf CLK_TCK)

# cpu_ticks PID: utime + stime of PID so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# one LABEL BIN RUN: one measured run; appends "label worker_us loadgen_us acked" to $OUT/runs.tsv.
one() {
  local label=$1 bin=$2 run=$3
  local dir=$OUT/$label-$run
  rm -rf "$dir"
  BIN=$bin start_worker "$dir"
  local before after report=$OUT/$label-$run.json
  before=$(cpu_ticks "$WORKER_PID")
  /usr/bin/time -f '%U %S' -o "$OUT/$label-$run.time" \
    "$bin" loadgen --url "$WORKER_URL" --rate "$RATE" --duration "$DURATION" --users "$USERS" \
    --connections "$CONNECTIONS" --seed "$run" --report "$report" ${LOADGEN_FLAGS:-} >/dev/null
  after=$(cpu_ticks "$WORKER_PID")
  stop_worker
  rm -rf "$dir"
  python3 - "$label" "$report" "$OUT/$label-$run.time" "$before" "$after" "$TICKS" >>"$OUT/runs.tsv" <<'PY'
import json, sys
label, report, timing, before, after, ticks = sys.argv[1:]
r = json.load(open(report))
acked = r["acked"]
u, s = map(float, open(timing).read().split()[-2:])
worker_us = (int(after) - int(before)) / int(ticks) * 1e6 / acked
loadgen_us = (u + s) * 1e6 / acked
check = "passed" if r["check_passed"] else "FAILED"
print(f"{label}\t{worker_us:.1f}\t{loadgen_us:.1f}\t{acked}\t{r['achieved_rate']:.0f}\t{r['persisted_rate']:.0f}\t{check}")
PY
  tail -1 "$OUT/runs.tsv" >&2
}

: >"$OUT/runs.tsv"
for run in $(seq 1 "$RUNS"); do
  one A "$BIN_A" "$run"
  if [ -n "${BIN_B:-}" ]; then one B "$BIN_B" "$run"; fi
done

echo "== HTTP ingest, $RATE/s for $DURATION, $USERS users, $CONNECTIONS connections: CPU µs per acknowledged command (median of $RUNS; min..max)"
python3 - "$OUT/runs.tsv" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
print(f"{'binary':<8}{'worker':>22}{'loadgen':>22}{'acked/s':>10}{'persisted/s':>13}  check")
for label in sorted({r[0] for r in rows}):
    mine = [r for r in rows if r[0] == label]
    def col(i):
        v = [float(r[i]) for r in mine]
        return f"{statistics.median(v):.1f} ({min(v):.1f}..{max(v):.1f})"
    checks = "all passed" if all(r[6].strip() == "passed" for r in mine) else "FAILED"
    print(f"{label:<8}{col(1):>22}{col(2):>22}{statistics.median(float(r[4]) for r in mine):>10.0f}"
          f"{statistics.median(float(r[5]) for r in mine):>13.0f}  {checks}")
PY
