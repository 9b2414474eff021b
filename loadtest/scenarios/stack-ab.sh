#!/usr/bin/env bash
# A/B of two builds on the real stack (one worker, Pulsar + Cassandra on
# this machine): RUNS pairs of runs, the builds alternating (A, B, A, B,
# ...) after WARMUP runs of A not counted, so that both see the same warm
# JVMs and the same noise. Prints each run's persisted rate and the median
# of each build.
#
#   BIN_A=old/tracking BIN_B=target/release/tracking loadtest/scenarios/stack-ab.sh
#                                      RUNS=3 RATE=2000 DURATION=30s WARMUP=1
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../stack.sh"
: "${BIN_A:?BIN_A: the first build's tracking binary}" "${BIN_B:?BIN_B: the second build's}"
stack_up
RUNS=${RUNS:-3}
RATE=${RATE:-2000}
DURATION=${DURATION:-30s}
USERS=${USERS:-100000}
OUT=$RESULTS/stack-ab; mkdir -p "$OUT"
one() { # one NAME BINARY SEED REPORT
  BIN=$2
  stack_run "$1" 1 "$3" "$4"
}
for w in $(seq 1 "${WARMUP:-1}"); do one "warm-$w" "$BIN_A" "$((100 + w))" "$OUT/warmup-$w.json"; done
a=(); b=()
for run in $(seq 1 "$RUNS"); do
  one "a-$run" "$BIN_A" "$run" "$OUT/a-$run.json"; a+=("$OUT/a-$run.json")
  one "b-$run" "$BIN_B" "$run" "$OUT/b-$run.json"; b+=("$OUT/b-$run.json")
done
echo "A ($BIN_A): persisted $(median persisted_rate "${a[@]}")/s (median of $RUNS)"
echo "B ($BIN_B): persisted $(median persisted_rate "${b[@]}")/s (median of $RUNS)"
