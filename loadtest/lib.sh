# Shared helpers of the load-test scenarios (sourced, not run).
# Every scenario builds the binary once, writes its reports under
# loadtest/results/<scenario>/ and prints a summary with medians.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The profiling profile: release code with symbols, for perf.
BIN=${TRACKING_BIN:-$ROOT/target/profiling/tracking}
RESULTS=${RESULTS:-$ROOT/loadtest/results}

build() {
  if [ -z "${TRACKING_BIN:-}" ]; then
    echo "==> cargo build --profile profiling" >&2
    (cd "$ROOT" && cargo build --profile profiling --quiet --bin tracking)
  fi
  [ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }
}

# start_worker DATA_DIR [extra flags...]: starts `tracking run` on port 0,
# sets WORKER_PID and WORKER_URL, waits until ready.
start_worker() {
  local dir=$1; shift
  local log="$dir.log"
  mkdir -p "$(dirname "$dir")"
  "$BIN" run --data-dir "$dir" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
  WORKER_PID=$!
  local addr="" i
  for i in $(seq 1 300); do
    addr=$(grep -o 'listening on http://[0-9.:]*' "$log" 2>/dev/null | tail -1 | sed 's#listening on http://##') || true
    [ -n "$addr" ] && curl -sf "http://$addr/tracking/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "worker did not start; log:" >&2; cat "$log" >&2; exit 1; }
  WORKER_URL="http://$addr"
  echo "worker $WORKER_PID on $WORKER_URL" >&2
}

# sample_rss PID FILE: appends the RSS (KiB) of PID to FILE every second
# while it lives (run in the background).
sample_rss() {
  while kill -0 "$1" 2>/dev/null; do
    awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null >>"$2" || true
    sleep 1
  done
}

stop_worker() {
  kill -TERM "$WORKER_PID" 2>/dev/null || true
  wait "$WORKER_PID" 2>/dev/null || true
}

# median FIELD FILES...: the median of a numeric JSON field (dotted path)
# over report files.
median() {
  python3 - "$@" <<'PY'
import json, statistics, sys
field, files = sys.argv[1], sys.argv[2:]
vals = []
for f in files:
    v = json.load(open(f))
    for k in field.split('.'):
        v = v[k] if v is not None else None
    if v is not None:
        vals.append(float(v))
print(f"{statistics.median(vals):.2f}" if vals else "n/a")
PY
}
