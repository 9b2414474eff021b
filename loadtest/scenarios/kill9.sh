#!/usr/bin/env bash
# kill -9 under full load, then `tracking verify`: a fresh worker (embedded
# default) takes RATE commands/s over HTTP; at KILL_AT seconds it is
# SIGKILLed, restarted on the same data dir, left to decide what its log
# still holds, stopped gracefully, and verified offline.
#
# Passes when `tracking verify` finds 0 differences (every projection equals
# its recount from the journal) and the status projection counts at least
# every command the generator saw acknowledged before the kill (each 202 is
# decided: one event or one rejection). The finer per-id proof (each 202
# exactly one event, seqs gap-free) is `tests/crash_recovery.rs`.
#
#   loadtest/scenarios/kill9.sh
#   RATE=40000 KILL_AT=8 USERS=100000 CONNECTIONS=128 loadtest/scenarios/kill9.sh
source "$(dirname "$0")/../lib.sh"
build
RATE=${RATE:-40000}; KILL_AT=${KILL_AT:-8}; USERS=${USERS:-100000}; CONNECTIONS=${CONNECTIONS:-128}
OUT=$RESULTS/kill9; mkdir -p "$OUT"
DATA=$OUT/worker
rm -rf "$DATA" "$OUT/loadgen.json"
# The status projection counts by UTC day of processing: today and
# tomorrow, so a run across midnight is counted whole.
FROM=$(date -u +%F); TO=$(date -u -d tomorrow +%F)

# decided: accepted + rejected since the run began, from the status projection.
decided() {
  curl -sf "$WORKER_URL/tracking/stats/status?from=$FROM&to=$TO" |
    python3 -c 'import json,sys; print(sum(i["accepted"] + i["rejected"] for i in json.load(sys.stdin)["items"]))'
}

start_worker "$DATA"
# The generator runs two seconds past the kill, so its report counts the
# acknowledgements it had and the sends the dead worker refused.
"$BIN" loadgen --url "$WORKER_URL" --rate "$RATE" --duration "$((KILL_AT + 2))s" --users "$USERS" \
  --connections "$CONNECTIONS" --max-drop-share 1 --drain-timeout 1s --report "$OUT/loadgen.json" \
  >"$OUT/loadgen.log" 2>&1 &
GEN=$!
sleep "$KILL_AT"
kill -KILL "$WORKER_PID"
wait "$WORKER_PID" 2>/dev/null || true
echo "killed worker $WORKER_PID at ${KILL_AT}s" >&2
wait "$GEN" || true
acked=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["acked"])' "$OUT/loadgen.json")

# Restart on the same data; wait until the decided count holds still for 3 s.
start_worker "$DATA"
last=-1; still=0
for _ in $(seq 1 600); do
  now=$(decided || echo -1)
  if [ "$now" = "$last" ]; then still=$((still + 1)); else still=0; last=$now; fi
  [ "$still" -ge 30 ] && break
  sleep 0.1
done
stop_worker
"$BIN" verify --data-dir "$DATA" >"$OUT/verify.txt" 2>"$OUT/verify.err" && vcode=0 || vcode=$?
summary=$(grep -i "differences" "$OUT/verify.txt" | tail -1)
echo "acknowledged before the kill: $acked; decided after the restart: $last; verify (exit $vcode): $summary"
if [ "$vcode" -ne 0 ] || [ "$last" -lt "$acked" ] || ! grep -q " 0 differences" "$OUT/verify.txt"; then
  echo "FAILED: see $OUT/verify.txt and $OUT/*.log" >&2
  exit 1
fi
echo "passed"
rm -rf "$DATA"
