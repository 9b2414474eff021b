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
  stack_run "warm-$run" 1 "$((100 + run))" "$OUT/warmup-$run.json" # not counted
done
for n in ${WORKERS:-1 2 3}; do
  files=()
  for run in $(seq 1 "$RUNS"); do
    f=$OUT/workers-$n-run-$run.json
    stack_run "scal-$n-$run" "$n" "$run" "$f"
    files+=("$f")
  done
  summary+=("workers=$n: persisted $(median persisted_rate "${files[@]}")/s (median of $RUNS), ack p99 $(median ack_latency.p99_ms "${files[@]}") ms")
done
printf '%s\n' "${summary[@]}"
