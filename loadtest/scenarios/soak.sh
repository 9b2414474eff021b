#!/usr/bin/env bash
# Soak: a steady rate for a long time (default 1 hour at 2000/s, zipf users,
# 1% invalid, 1% duplicates); watch the worker's RSS stay flat.
source "$(dirname "$0")/../lib.sh"
build
DURATION=${DURATION:-1h}; RATE=${RATE:-2000}
OUT=$RESULTS/soak; mkdir -p "$OUT"
rm -rf "$OUT/worker" "$OUT/rss.txt"
start_worker "$OUT/worker"
sample_rss "$WORKER_PID" "$OUT/rss.txt" &
"$BIN" loadgen --url "$WORKER_URL" --rate "$RATE" --duration "$DURATION" --users 200000 --distribution zipf \
  --invalid 0.01 --duplicates 0.01 --connections 16 --report "$OUT/soak.json"
stop_worker
echo "worker RSS (MiB): first $(( $(head -1 "$OUT/rss.txt") / 1024 )), last $(( $(tail -1 "$OUT/rss.txt") / 1024 )), peak $(( $(sort -n "$OUT/rss.txt" | tail -1) / 1024 ))"
rm -rf "$OUT/worker"
