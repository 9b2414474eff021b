#!/usr/bin/env bash
# Where the time goes on the real stack: one worker (Pulsar mode, ScyllaDB
# store on Cassandra) under RATE commands/s for DURATION. Prints the CPU
# seconds each process used during the run (Cassandra, Pulsar, the worker,
# the generator) and, with `perf` installed, the worker's hottest functions
# (perf record -g at 99 Hz; report in loadtest/results/stack-profile/).
# With `jcmd` (the JDK's) it also records Cassandra with JFR for the run
# and prints its CPU by thread pool and its hottest methods
# (loadtest/jfr-summary.py; recording in loadtest/results/stack-profile/).
#
#   loadtest/scenarios/stack-profile.sh        RATE=1000 DURATION=30s WITH_PERF=1 (0: no perf)
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../stack.sh"
build
stack_up
RATE=${RATE:-1000}
DURATION=${DURATION:-30s}
OUT=$RESULTS/stack-profile; mkdir -p "$OUT"
new_run "profile"
start_workers 1 "$OUT/run"
worker=${WORKER_PIDS[0]}
cass=$(cat "${TRACKING_NATIVE_HOME:-$HOME/.cache/alpes-tracking-native}/cassandra/run/cassandra.pid")
pulsar=$(pgrep -f 'org.apache.pulsar.PulsarStandaloneStarter' | head -1)
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A before
for p in "$cass" "$pulsar" "$worker"; do before[$p]=$(cpu "$p"); done
if [ "${WITH_PERF:-1}" = 1 ] && command -v perf >/dev/null 2>&1; then
  perf record -F 99 -g -p "$worker" -o "$OUT/perf.data" -- sleep "${DURATION%s}" >/dev/null 2>&1 &
  PERF=$!
fi
rm -f "$OUT/cassandra.jfr"
if command -v jcmd >/dev/null 2>&1; then
  jcmd "$cass" JFR.start name=stack-profile settings=profile duration="${DURATION%s}s" \
    filename="$OUT/cassandra.jfr" >/dev/null 2>&1 || true
fi
/usr/bin/time -f '%e %U %S' -o "$OUT/loadgen.time" "$BIN" loadgen --url "${WORKER_URLS[0]}" --rate "$RATE" \
  --duration "$DURATION" --users 100000 --connections 64 --seed 1 --drain-timeout 600s \
  --report "$OUT/profile.json" >"$OUT/profile.log" 2>&1 || true
[ -n "${PERF:-}" ] && wait "$PERF" 2>/dev/null || true
# The last line: after a failed run, time(1) writes "Command exited with
# non-zero status" first.
read -r wall lu ls < <(tail -1 "$OUT/loadgen.time")
printf 'CPU seconds over the run (%.0f s wall, 2 cores = %.0f core-seconds):\n' "$wall" "$(echo "$wall * 2" | bc)"
for name in cassandra:$cass pulsar:$pulsar worker:$worker; do
  p=${name#*:}
  printf '  %-10s %6.1f s\n' "${name%%:*}" "$(echo "$(cpu "$p") - ${before[$p]}" | bc)"
done
printf '  %-10s %6.1f s\n' loadgen "$(echo "$lu + $ls" | bc)"
grep -E '^throughput|^check' "$OUT/profile.log"
if [ -f "$OUT/cassandra.jfr" ]; then
  echo "Cassandra (JFR, the first ${DURATION}):"
  python3 "$ROOT/loadtest/jfr-summary.py" "$OUT/cassandra.jfr" | sed 's/^/  /'
fi
stop_workers
if [ -f "$OUT/perf.data" ]; then
  perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio >"$OUT/perf-report.txt" 2>/dev/null || true
  grep -E '^ +[0-9]' "$OUT/perf-report.txt" | head -25 >"$OUT/perf-top.txt" || true
  echo "worker's hottest functions (self time, perf):"
  sed 's/^/  /' "$OUT/perf-top.txt"
fi
drop_run
