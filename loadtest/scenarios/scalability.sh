#!/usr/bin/env bash
# Scalability: 1, 2 and 3 workers on one Key_Shared subscription of a
# partitioned commands topic (real Apache Pulsar), sharing one ScyllaDB
# store (real Apache Cassandra 5), all on this machine. The generator
# offers RATE commands/s over HTTP (each POST is published to Pulsar keyed
# by user) for DURATION; the figure is the persisted rate (events counted
# in the store / time until the last one was), median of RUNS runs.
#
# Before the measured runs, WARMUP runs (default 1, one worker, not
# counted) warm the JVMs up: right after the services start, Cassandra's
# first runs are far slower (548, 841, then 1,117/s in a row, ninth
# session), which a median of three does not hide.
#
#   loadtest/scenarios/scalability.sh            WORKERS="1 2 3" RUNS=3 RATE=3000 DURATION=60s WARMUP=1
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../stack.sh"
build
stack_up
RUNS=${RUNS:-3}
RATE=${RATE:-3000}
DURATION=${DURATION:-60s}
USERS=${USERS:-100000}
OUT=$RESULTS/scalability; mkdir -p "$OUT"
summary=()
for run in $(seq 1 "${WARMUP:-1}"); do
  new_run "warm-$run"
  start_workers 1 "$OUT/warm-$run"
  "$BIN" loadgen --url "${WORKER_URLS[0]}" --rate "$RATE" --duration "$DURATION" --users "$USERS" \
    --connections 64 --seed "$((100 + run))" --drain-timeout 600s --report "$OUT/warmup-$run.json" \
    >"$OUT/warmup-$run.log" 2>&1 || true
  echo "warm-up run $run (not counted): $(python3 -c "import json;r=json.load(open('$OUT/warmup-$run.json'));print(f\"persisted {r['persisted_rate']:.0f}/s\")" 2>/dev/null || echo 'no report')" >&2
  stop_workers
  drop_run
  rm -rf "$OUT/warm-$run"
done
for n in ${WORKERS:-1 2 3}; do
  files=()
  for run in $(seq 1 "$RUNS"); do
    new_run "scal-$n-$run"
    start_workers "$n" "$OUT/run-$n-$run"
    f=$OUT/workers-$n-run-$run.json
    # POSTs round-robin over the workers' HTTP endpoints is not needed: a
    # POST only publishes; every worker consumes its share of the topic.
    "$BIN" loadgen --url "${WORKER_URLS[0]}" --rate "$RATE" --duration "$DURATION" --users "$USERS" \
      --connections 64 --seed "$run" --drain-timeout 600s --report "$f" >"$f.log" 2>&1 || true
    echo "workers=$n run=$run: $(python3 -c "import json;r=json.load(open('$f'));print(f\"persisted {r['persisted_rate']:.0f}/s, check {'ok' if r['check_passed'] else 'FAILED'}\")" 2>/dev/null || echo 'no report')" >&2
    stop_workers
    drop_run
    rm -rf "$OUT/run-$n-$run"
    files+=("$f")
  done
  summary+=("workers=$n: persisted $(median persisted_rate "${files[@]}")/s (median of $RUNS), ack p99 $(median ack_latency.p99_ms "${files[@]}") ms")
done
printf '%s\n' "${summary[@]}"
