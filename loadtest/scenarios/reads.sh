#!/usr/bin/env bash
# Reads under full ingest: GET /tracking/stats/daily at READ_RATE (default
# 1000/s, open model) while the generator ingests at RATE over HTTP.
source "$(dirname "$0")/../lib.sh"
build
RUNS=${RUNS:-3}
RATE=${RATE:-8000}
READ_RATE=${READ_RATE:-1000}
DURATION=${DURATION:-30s}
OUT=$RESULTS/reads; mkdir -p "$OUT"
files=()
for run in $(seq 1 "$RUNS"); do
  start_worker "$OUT/worker-$run"
  f=$OUT/reads-$run.json
  "$BIN" loadgen --url "$WORKER_URL" --rate "$RATE" --duration "$DURATION" --users 100000 --read-rate "$READ_RATE" \
    --connections 32 --seed "$run" --report "$f" >/dev/null 2>&1 || true
  stop_worker
  rm -rf "$OUT/worker-$run"
  files+=("$f")
done
echo "reads at ${READ_RATE}/s under ${RATE}/s ingest: p50 $(median read_latency.p50_ms "${files[@]}") ms, p99 $(median read_latency.p99_ms "${files[@]}") ms, p99.9 $(median read_latency.p999_ms "${files[@]}") ms (bar: p99 < 5 ms)"
