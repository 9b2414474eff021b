#!/usr/bin/env bash
# The original performance scenario: 400 interactions/min for 10 minutes,
# 800/min for 10 minutes, then a ramp to the maximum. Against a worker over
# HTTP (the original was measured at its HTTP/broker entry).
# QUICK=1 shortens the stages to 1 minute each (for a smoke run).
source "$(dirname "$0")/../lib.sh"
build
STAGE=${STAGE:-10m}; RAMP=${RAMP:-2m}; MAX=${MAX:-20000/s}
if [ "${QUICK:-0}" = 1 ]; then STAGE=1m; RAMP=30s; fi
OUT=$RESULTS/performance; mkdir -p "$OUT"
rm -rf "$OUT/worker"
start_worker "$OUT/worker"
# The last stage ramps past what the worker can take: sends dropped there
# are expected (--max-drop-share 1); a lost or doubled event still fails.
"$BIN" loadgen --url "$WORKER_URL" --stage "400/m:$STAGE" --stage "800/m:$STAGE" --stage "800/m..$MAX:$RAMP" \
  --users 10000 --invalid 0.01 --duplicates 0.01 --connections 32 --drain-timeout 300s --max-drop-share 1 --report "$OUT/performance.json"
stop_worker
rm -rf "$OUT/worker"
