#!/usr/bin/env bash
# CPU per event of the embedded pipeline over a long steady window, by
# thread, from /proc (utime + stime of every thread at the window's two
# ends), so that work which comes in bursts is inside it: the LSM's
# compactions run every few tens of seconds (when level 0 fills), which
# the 10 s sample of pipeline-profile.sh can miss. No perf needed.
#
#   loadtest/scenarios/pipeline-steady.sh     RATE=30000 USERS=100000 WAIT=10 WINDOW=60 RUNS=3
#   BIN_A=old BIN_B=new loadtest/scenarios/pipeline-steady.sh    (interleaved A, B, A, B, ...)
#
# Threads are grouped by name: the generator's feed (the main thread, not
# counted in "without the generator"), the pipeline's runtime and the
# blocking pool (`tokio-rt-worker`), the log's writers, the store's index
# checkpoint and fjall's worker (flushes and compactions).
source "$(dirname "$0")/../lib.sh"
RATE=${RATE:-30000}
USERS=${USERS:-100000}
WAIT=${WAIT:-10}
WINDOW=${WINDOW:-60}
RUNS=${RUNS:-3}
OUT=$RESULTS/pipeline-steady; mkdir -p "$OUT"
[ -n "${BIN_A:-}" ] || build

# snapshot PID: "tid name ticks" for every thread.
snapshot() {
  local t
  for t in /proc/"$1"/task/*; do
    # The name may hold a space; the ticks are fields 14 and 15 after the ")".
    awk -v tid="${t##*/}" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " ");
      n = $0; sub(/^[^(]*\(/, "", n); sub(/\).*$/, "", n); gsub(/ /, "_", n);
      print tid, n, f[12] + f[13] }' "$t/stat" 2>/dev/null || true
  done
}

one() { # one NAME BINARY SEED
  local name=$1 bin=$2 seed=$3 data=$OUT/data-$1
  rm -rf "$data"
  "$bin" loadgen --rate "$RATE" --duration "$((WAIT + WINDOW + 5))s" --users "$USERS" --seed "$seed" \
    --data-dir "$data" --drain-timeout 120s --report "$OUT/$name.json" ${LOADGEN_FLAGS:-} >"$OUT/$name.log" 2>&1 &
  local gen=$!
  sleep "$WAIT"
  snapshot "$gen" >"$OUT/$name.start"
  sleep "$WINDOW"
  snapshot "$gen" >"$OUT/$name.end"
  wait "$gen" || { echo "run $name failed; log: $OUT/$name.log" >&2; exit 1; }
  rm -rf "$data"
  python3 - "$OUT/$name" "$WAIT" "$WINDOW" "$(getconf CLK_TCK)" "$(basename "$bin")" <<'PY'
import collections, json, sys
base, wait, window, hz, main = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5][:15]
def read(path):
    return {t: (n, int(c)) for t, n, c in (l.split() for l in open(path))}
start, end = read(base + ".start"), read(base + ".end")
r = json.load(open(base + ".json"))
events = sum(t["persisted"] for t in r["timeline"] if wait <= t["t"] < wait + window)
groups = collections.Counter()
for tid, (name, ticks) in end.items():
    before = start.get(tid, (name, 0))[1]  # a thread started in the window counts whole
    group = "generator (main thread)" if name == main else name.rstrip("0123456789-").rstrip("-") or name
    groups[group] += ticks - before
us = {g: t / hz * 1e6 / max(events, 1) for g, t in groups.items()}
gen = us.get("generator (main thread)", 0.0)
total = sum(us.values())
check = next((l.strip() for l in open(base + ".log") if l.startswith("check")), "check: ?")
# The generator runs the same code in every build and run, so the
# pipeline's µs divided by its own is a gauge of the shared machine's
# speed, and a rough one: the pipeline waits on memory far more than the
# generator does, and neighbours' load slows the two unequally. Builds
# are compared in interleaved pairs (BIN_A, BIN_B), not by this ratio.
ratio = (total - gen) / gen if gen else float("nan")
out = {"events": events, "rate": events / window, "us_per_event": total,
       "us_without_generator": total - gen, "per_generator_us": ratio, "threads": us}
json.dump(out, open(base + ".cpu.json", "w"), indent=1)
print(f"{base.rsplit('/', 1)[1]}: {events / window:,.0f} events/s persisted over {window} s; "
      f"{total - gen:.1f} us of CPU per event without the generator ({total:.1f} with it), "
      f"{ratio:.2f} x the generator's own; {check}")
for g, v in sorted(us.items(), key=lambda x: -x[1]):
    if v >= 0.05:
        print(f"    {v:6.2f} us  {g}")
PY
}

if [ -n "${BIN_A:-}" ]; then
  : "${BIN_B:?BIN_B: the second build, with BIN_A}"
  for r in $(seq 1 "$RUNS"); do one "a-$r" "$BIN_A" "$r"; one "b-$r" "$BIN_B" "$r"; done
  sides="a b"
else
  for r in $(seq 1 "$RUNS"); do one "run-$r" "$BIN" "$r"; done
  sides="run"
fi
for side in $sides; do
  python3 - "$OUT" "$side" "$RUNS" <<'PY'
import json, statistics, sys
out, side, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
rs = [json.load(open(f"{out}/{side}-{i}.cpu.json")) for i in range(1, runs + 1)]
med = lambda xs: statistics.median(xs)
w = [r["us_without_generator"] for r in rs]
g = [r.get("per_generator_us", float("nan")) for r in rs]
print(f"== {side}: median of {runs}: {med(w):.1f} us per event without the generator "
      f"({min(w):.1f}-{max(w):.1f}), {med(g):.2f} x the generator's own ({min(g):.2f}-{max(g):.2f}), "
      f"{med([r['rate'] for r in rs]):,.0f} events/s")
names = sorted({g for r in rs for g in r["threads"]}, key=lambda g: -med([r["threads"].get(g, 0) for r in rs]))
for g in names:
    v = med([r["threads"].get(g, 0) for r in rs])
    if v >= 0.05:
        print(f"    {v:6.2f} us  {g}")
PY
done
echo "reports: $OUT"
