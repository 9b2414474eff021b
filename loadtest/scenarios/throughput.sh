#!/usr/bin/env bash
# The embedded-default throughput bars, in one process on this machine:
#  1. the whole pipeline (log -> consumers -> aggregates -> journal ->
#     projections) at fixed rates, fed in-process (no HTTP);
#  2. p99 end-to-end latency at half the best sustained rate;
#  3. HTTP ingest (POST /tracking/interactions) against a separate worker.
# RUNS (default 3) runs per figure; medians are printed. DURATION (default
# 60s, the bar's "sustained for 60 s": shorter runs keep the store small
# and flatter the figure) per run.
# Usage: loadtest/scenarios/throughput.sh [RATE...]   (default: 10000 20000 30000 40000)
source "$(dirname "$0")/../lib.sh"
build
RUNS=${RUNS:-3}
DURATION=${DURATION:-60s}
USERS=${USERS:-100000}
OUT=$RESULTS/throughput; mkdir -p "$OUT"
RATES=${*:-10000 20000 30000 40000}

echo "== pipeline, in-process feed: ${RUNS} runs x ${DURATION} per rate, ${USERS} users"
printf '%-8s %-14s %-14s %-12s %-12s\n' rate acked/s persisted/s e2e_p50_ms e2e_p99_ms
for rate in $RATES; do
  files=()
  for run in $(seq 1 "$RUNS"); do
    f=$OUT/pipeline-$rate-$run.json
    "$BIN" loadgen --rate "$rate" --duration "$DURATION" --users "$USERS" --seed "$run" --max-drop-share 1 --report "$f" >/dev/null
    files+=("$f")
  done
  printf '%-8s %-14s %-14s %-12s %-12s\n' "$rate" "$(median achieved_rate "${files[@]}")" "$(median persisted_rate "${files[@]}")" \
    "$(median e2e_latency.p50_ms "${files[@]}")" "$(median e2e_latency.p99_ms "${files[@]}")"
done

echo "== HTTP ingest against a separate worker: ${RUNS} runs x ${DURATION}"
HTTP_RATE=${HTTP_RATE:-10000}
files=()
for run in $(seq 1 "$RUNS"); do
  start_worker "$OUT/http-worker-$run"
  f=$OUT/http-$HTTP_RATE-$run.json
  "$BIN" loadgen --url "$WORKER_URL" --rate "$HTTP_RATE" --duration "$DURATION" --users "$USERS" --connections 32 --seed "$run" --max-drop-share 1 --report "$f" >/dev/null
  stop_worker
  rm -rf "$OUT/http-worker-$run"
  files+=("$f")
done
printf 'http %s/s offered: acked %s/s, ack p50 %s ms, p99 %s ms, persisted %s/s\n' "$HTTP_RATE" \
  "$(median achieved_rate "${files[@]}")" "$(median ack_latency.p50_ms "${files[@]}")" \
  "$(median ack_latency.p99_ms "${files[@]}")" "$(median persisted_rate "${files[@]}")"
echo "reports: $OUT"
