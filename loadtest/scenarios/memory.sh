#!/usr/bin/env bash
# Memory with 1,000,000 distinct users passing through one worker: the
# worker's peak RSS (sampled every second, and the kernel's VmHWM) while the
# generator sends one command per user (round robin) over HTTP.
# Usage: loadtest/scenarios/memory.sh   (USERS, RATE to change the size)
source "$(dirname "$0")/../lib.sh"
build
USERS=${USERS:-1000000}
RATE=${RATE:-10000}
OUT=$RESULTS/memory; mkdir -p "$OUT"
rm -rf "$OUT/worker" "$OUT/rss.txt"
start_worker "$OUT/worker"
sample_rss "$WORKER_PID" "$OUT/rss.txt" &
secs=$(( (USERS + RATE - 1) / RATE ))
"$BIN" loadgen --url "$WORKER_URL" --rate "$RATE" --duration "${secs}s" --users "$USERS" --distribution sequential \
  --connections 32 --drain-timeout 600s --report "$OUT/memory.json"
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$WORKER_PID/status")
stop_worker
peak=$(sort -n "$OUT/rss.txt" | tail -1)
echo "worker peak RSS: $((peak / 1024)) MiB sampled, VmHWM $((hwm / 1024)) MiB, for $USERS distinct users (bar: 256 MiB)"
rm -rf "$OUT/worker"
