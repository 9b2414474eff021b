#!/usr/bin/env bash
# The fleet's real path, measured without a generator beside it: COMMANDS
# commands over USERS users are published to a fresh partitioned topic
# while no worker runs (the Key_Shared subscription exists, so the broker
# keeps them as a backlog); then WORKERS workers (Pulsar mode, ScyllaDB
# store on Apache Cassandra 5) start and drain it. Per run it prints the
# drain rate (from the workers' start until every command is persisted and
# none is in flight, by the workers' metrics; the broker's backlog is then
# checked to be 0) and
# the CPU per event of each process over the drain (worker(s), Cassandra,
# the Pulsar broker; utime + stime from /proc), then `tracking check`
# against the manifest (lost, doubled, gaps, recount). Medians of RUNS,
# after WARMUP (1) runs that are not counted: a JVM that has just started
# (or dropped the previous run's keyspace) costs far more per event.
#
#   loadtest/scenarios/stack-drain.sh      COMMANDS=30000 USERS=100000 WORKERS=1 RUNS=3
#   STORE=embedded ...                     the same drain into each worker's embedded store
#   WORKER_FLAGS="--fold-interval 1h" ...  extra flags of the workers (here: no folding during the drain)
#   PERF=1 ...                             perf record of the first worker (call graphs, 99 Hz) for
#                                          the first run; its hottest functions in the results dir
#                                          (the ceiling of any shared-store design here)
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../stack.sh"
build
stack_up
COMMANDS=${COMMANDS:-30000}
USERS=${USERS:-100000}
WORKERS=${WORKERS:-1}
RUNS=${RUNS:-3}
STORE=${STORE:-scylla}
PUBLISH_RATE=${PUBLISH_RATE:-10000}
OUT=$RESULTS/stack-drain; mkdir -p "$OUT"
cass=$(cat "${TRACKING_NATIVE_HOME:-$HOME/.cache/alpes-tracking-native}/cassandra/run/cassandra.pid")
pulsar=$(pgrep -f 'org.apache.pulsar.PulsarStandaloneStarter' | head -1)
cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat" 2>/dev/null || echo 0; }
backlog() {
  curl -sf "$ADMIN/admin/v2/persistent/public/default/${TOPIC##*/}/partitioned-stats" 2>/dev/null |
    python3 -c 'import json,sys
print(json.load(sys.stdin).get("subscriptions", {}).get("loadtest", {}).get("msgBacklog", -1))' 2>/dev/null || echo -1
}
worker_args() {
  if [ "$STORE" = embedded ]; then
    echo --pulsar-url "$PULSAR_URL" --topic-commands "$TOPIC" --subscription loadtest
  else
    stack_args
  fi
}

: >"$OUT/runs.tsv"
WARMUP=${WARMUP:-1}
for run in $(seq $((1 - WARMUP)) "$RUNS"); do
  new_run "drain-$run"
  # The subscription first, so that the broker keeps what is published.
  curl -sf -X PUT "$ADMIN/admin/v2/persistent/public/default/${TOPIC##*/}/subscription/loadtest" >/dev/null
  secs=$(python3 -c "print(max(1, round($COMMANDS / $PUBLISH_RATE)))")
  "$BIN" loadgen --pulsar-url "$PULSAR_URL" --topic "$TOPIC" --rate "$PUBLISH_RATE" --duration "${secs}s" \
    --users "$USERS" --seed "$run" --manifest "$OUT/manifest-$run.jsonl" --report "$OUT/feed-$run.json" \
    >"$OUT/feed-$run.log" 2>&1
  sent=$(wc -l <"$OUT/manifest-$run.jsonl")
  b0=$(backlog)
  echo "run $run: backlog of $b0 ($sent published), starting $WORKERS worker(s)" >&2
  c0=$(cpu "$cass"); p0=$(cpu "$pulsar"); t0=$(date +%s.%N)
  WORKER_PIDS=(); WORKER_URLS=()
  for i in $(seq 1 "$WORKERS"); do
    # shellcheck disable=SC2046
    start_worker "$OUT/run-$run/w$i" $(worker_args) ${WORKER_FLAGS:-}
    WORKER_PIDS+=("$WORKER_PID"); WORKER_URLS+=("$WORKER_URL")
  done
  if [ "${PERF:-0}" = 1 ] && [ "$run" = 1 ] && command -v perf >/dev/null 2>&1; then
    perf record -F 99 --call-graph dwarf -p "${WORKER_PIDS[0]}" -o "$OUT/perf.data" >/dev/null 2>&1 &
    PERF_PID=$!
  fi
  # The end of the drain, seen from the workers' own metrics (cheap to
  # poll: the broker's admin API costs it ~5 ms of CPU a request, which
  # would be counted as the broker's): every command persisted and nothing
  # in flight. Then the broker's backlog is checked (not timed).
  python3 - "$b0" 900 "${WORKER_URLS[@]}" <<'PY' || echo "run $run: the drain did not end in 900 s" >&2
import sys, time, urllib.request
want, limit, urls = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
start = time.time()
def scrape(url):
    persisted = in_flight = 0.0
    for line in urllib.request.urlopen(url + "/metrics", timeout=2).read().decode().splitlines():
        if line.startswith("tracking_events_persisted_total"):
            persisted += float(line.rsplit(" ", 1)[1])
        elif line.startswith("tracking_in_flight_messages"):
            in_flight += float(line.rsplit(" ", 1)[1])
    return persisted, in_flight
while time.time() - start < limit:
    try:
        totals = [scrape(u) for u in urls]
    except Exception:
        totals = [(0, 1)]
    if sum(p for p, _ in totals) >= want and sum(f for _, f in totals) == 0:
        sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
PY
  t1=$(date +%s.%N); c1=$(cpu "$cass"); p1=$(cpu "$pulsar")
  for _ in $(seq 1 100); do [ "$(backlog)" = 0 ] && break; sleep 0.2; done
  [ "$(backlog)" = 0 ] || echo "run $run: the broker's backlog is $(backlog) after the drain" >&2
  if [ -n "${PERF_PID:-}" ]; then
    kill -INT "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null || true; PERF_PID=""
    perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
      grep -E '^ +[0-9]' | head -40 >"$OUT/perf-top.txt" || true
    echo "worker's hottest functions: $OUT/perf-top.txt" >&2
  fi
  w=0; for p in "${WORKER_PIDS[@]}"; do w=$(python3 -c "print($w + $(cpu "$p"))"); done
  stop_workers
  if [ "$run" -le 0 ]; then
    echo "warm-up run: $b0 events in $(python3 -c "print(round($t1 - $t0, 2))") s (not counted)" >&2
    drop_run; rm -rf "$OUT/run-$run"; continue
  fi
  python3 - "$run" "$b0" "$t0" "$t1" "$w" "$c0" "$c1" "$p0" "$p1" "$STORE" >>"$OUT/runs.tsv" <<'PY'
import sys
run, n, t0, t1, w, c0, c1, p0, p1, store = sys.argv[1:]
n = int(n); wall = float(t1) - float(t0)
cass = (float(c1) - float(c0)) * 1e6 / n if store != "embedded" else 0.0
print(f"{run}\t{n}\t{wall:.2f}\t{n / wall:.0f}\t{float(w) * 1e6 / n:.0f}\t{cass:.0f}\t{(float(p1) - float(p0)) * 1e6 / n:.0f}")
PY
  tail -1 "$OUT/runs.tsv" | awk -F'\t' '{printf "run %s: %s events in %s s = %s/s; CPU us/event: workers %s, cassandra %s, pulsar %s\n", $1, $2, $3, $4, $5, $6, $7}' >&2
  if [ "$STORE" != embedded ]; then
    "$BIN" check --manifest "$OUT/manifest-$run.jsonl" --scylla-nodes "$SCYLLA_NODES" --scylla-keyspace "$KS" \
      --scylla-consistency one --pulsar-url "$PULSAR_URL" --topic "$TOPIC" --wait 60s \
      --report "$OUT/check-$run.json" >"$OUT/check-$run.log" 2>&1 && echo "run $run: check passed" >&2 ||
      { echo "run $run: CHECK FAILED ($OUT/check-$run.log)" >&2; tail -5 "$OUT/check-$run.log" >&2; }
  fi
  drop_run
  rm -rf "$OUT/run-$run"
done
python3 - "$OUT/runs.tsv" "$WORKERS" "$STORE" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
col = lambda i: [float(r[i]) for r in rows]
def m(i):
    v = col(i)
    return f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})"
print(f"drain of {int(col(1)[0]):,} commands, {sys.argv[2]} worker(s), {sys.argv[3]} store, median (range) of {len(rows)}:")
print(f"  drained/s            {m(3)}")
print(f"  worker CPU us/event  {m(4)}")
print(f"  cassandra us/event   {m(5)}")
print(f"  pulsar us/event      {m(6)}")
PY
