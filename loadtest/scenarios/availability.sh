#!/usr/bin/env bash
# Availability: three workers on one Key_Shared subscription (real Pulsar)
# sharing one ScyllaDB store (real Cassandra) under a steady load, with
# reads. Mid-run one worker is killed with SIGKILL (and restarted later) and
# another is stopped with SIGTERM (it must exit 0 within its grace). The
# generator posts to and reads from the worker that stays up.
# Passes when: every command sent is exactly one event (the generator's end
# check: counted == sent valid, no more, no less), `tracking verify` finds
# 0 differences, and the SIGTERM'd worker exited 0. Prints the read
# success ratio and the latencies.
#
#   loadtest/scenarios/availability.sh     RATE=300 DURATION=90s READ_RATE=50
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../stack.sh"
build
stack_up
RATE=${RATE:-300}
DURATION=${DURATION:-90s}
READ_RATE=${READ_RATE:-50}
secs=${DURATION%s}
OUT=$RESULTS/availability; mkdir -p "$OUT"
new_run "avail"
start_workers 3 "$OUT/run"
f=$OUT/availability.json
"$BIN" loadgen --url "${WORKER_URLS[0]}" --rate "$RATE" --duration "$DURATION" --users 20000 \
  --read-rate "$READ_RATE" --duplicates 0.01 --connections 32 --seed 7 --drain-timeout 300s \
  --report "$f" >"$f.log" 2>&1 &
LOADGEN=$!
sleep $((secs / 3))
echo "t=$((secs / 3))s: SIGKILL worker 2 (pid ${WORKER_PIDS[1]})" >&2
kill -KILL "${WORKER_PIDS[1]}"; wait "${WORKER_PIDS[1]}" 2>/dev/null || true
sleep $((secs / 6))
echo "t=$((secs / 2))s: SIGTERM worker 3 (pid ${WORKER_PIDS[2]})" >&2
kill -TERM "${WORKER_PIDS[2]}"
set +e; wait "${WORKER_PIDS[2]}"; term_rc=$?; set -e
echo "worker 3 exited $term_rc" >&2
sleep $((secs / 6))
echo "t=$((2 * secs / 3))s: restarting worker 2" >&2
# shellcheck disable=SC2046
start_worker "$OUT/run/w2" $(stack_args)
WORKER_PIDS[1]=$WORKER_PID; WORKER_PIDS[2]=$WORKER_PID
set +e; wait "$LOADGEN"; lg_rc=$?; set -e
stop_workers
verified=$(verify_run)
python3 - "$f" "$term_rc" "$verified" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
term_rc, verified = sys.argv[2], sys.argv[3]
reads = (r.get("read_latency") or {}).get("count", 0)
failed = r.get("reads_failed", 0)
ratio = reads / (reads + failed) if reads + failed else 0
print(f"sent {r['sent']} ({r['duplicates']} duplicates), expected events {r['expected_events']}, counted {r['counted_events']}: "
      f"{'no loss, no duplicate' if r['check_passed'] else 'CHECK FAILED'}")
print(f"SIGTERM'd worker exit code: {term_rc}; verify: {verified}")
print(f"reads: {reads} ok, {failed} failed, success ratio {ratio:.4f}; ack p99 {r['ack_latency']['p99_ms']:.1f} ms")
ok = r['check_passed'] and term_rc == "0" and " 0 differences" in verified
sys.exit(0 if ok else 1)
PY
drop_run
