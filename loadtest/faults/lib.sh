# Helpers of the fault suite (sourced by every scenario; see README.md).
# Real Apache Pulsar and Apache Cassandra 5 (started natively if needed),
# a fresh partitioned topic and keyspace per scenario, workers in Pulsar
# mode on the ScyllaDB store, the generator feeding the topic directly (a
# keyed producer, in order, with a manifest), and `tracking check` as the
# judge. FORM=short (CI) or FORM=long (by hand).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../stack.sh"

FORM=${FORM:-short}
if [ "$FORM" = long ]; then
  RATE=${RATE:-300}; DURATION=${DURATION:-300}
else
  RATE=${RATE:-200}; DURATION=${DURATION:-40}
fi
USERS=${USERS:-2000}
SEED=${SEED:-$RANDOM}
SUMMARY=$RESULTS/faults/summary.tsv

# begin NAME: the scenario's output dir (OUT), topic and keyspace.
begin() {
  SCENARIO=$1
  OUT=$RESULTS/faults/$SCENARIO-$(date +%H%M%S)
  mkdir -p "$OUT"
  build
  stack_up
  new_run "f-$SCENARIO"
  echo "== fault scenario $SCENARIO ($FORM form: $RATE/s for ${DURATION}s, seed $SEED) -> $OUT" >&2
}

# feed [loadgen flags...]: the generator in the background (FEED_PID).
# Shares: DUPLICATES (0.02), INVALID (0.01), POISON (0.005).
feed() {
  "$BIN" loadgen --pulsar-url "$PULSAR_URL" --topic "$TOPIC" --rate "$RATE" \
    --duration "${DURATION}s" --users "$USERS" --seed "$SEED" \
    --duplicates "${DUPLICATES:-0.02}" --invalid "${INVALID:-0.01}" --poison "${POISON:-0.005}" \
    --drain-timeout 600s \
    --manifest "$OUT/manifest.jsonl" --report "$OUT/feed.json" "$@" >"$OUT/feed.log" 2>&1 &
  FEED_PID=$!
}

# worker_n I [flags...]: starts worker I of the run (index into
# WORKER_PIDS/URLS), with extra flags if given.
worker_n() {
  local i=$1
  # shellcheck disable=SC2046
  start_worker "$OUT/w$i" $(stack_args) --shutdown-grace "${GRACE:-15}s" "${@:2}"
  WORKER_PIDS[i]=$WORKER_PID; WORKER_URLS[i]=$WORKER_URL
  sample_rss "$WORKER_PID" "$OUT/w$i.rss" &
}

# backlog: messages of the run's subscription not yet acknowledged
# (delivered or not).
backlog() {
  curl -sf "$ADMIN/admin/v2/persistent/public/default/${TOPIC##*/}/partitioned-stats" 2>/dev/null |
    python3 -c 'import json,sys
print(json.load(sys.stdin).get("subscriptions", {}).get("loadtest", {}).get("msgBacklog", 0))' 2>/dev/null || echo unknown
}

# drained [TIMEOUT]: waits for the feed, then until the subscription's
# backlog is 0 (every message processed and acknowledged).
drained() {
  local timeout=${1:-600} t=0 b
  set +e; wait "$FEED_PID"; FEED_RC=$?; set -e
  while :; do
    b=$(backlog)
    [ "$b" = 0 ] && break
    if ((t >= timeout)); then echo "backlog still $b after ${timeout}s" >&2; return 1; fi
    ((t % 10 == 0)) && echo "waiting for the backlog to drain: $b" >&2
    sleep 1; t=$((t + 1))
  done
}

# watch FILE: every second, one line "unix-time backlog code..." with the
# readiness answer of every worker (000: not answering), until unwatch.
watch() {
  touch "$OUT/.watching"
  (
    while [ -f "$OUT/.watching" ]; do
      local codes="" u
      for u in "${WORKER_URLS[@]}"; do
        codes+=" $(curl -s -o /dev/null -m 1 -w '%{http_code}' "$u/tracking/ready" 2>/dev/null || true)"
      done
      echo "$(date +%s) $(backlog)$codes" >>"$1"
      sleep 1
    done
  ) &
}
unwatch() { rm -f "$OUT/.watching"; sleep 1.2; }

# all_ready TIMEOUT: waits until every worker answers ready (200).
all_ready() {
  local t=0 u ok
  while ((t < $1)); do
    ok=1
    for u in "${WORKER_URLS[@]}"; do
      [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$u/tracking/ready")" = 200 ] || ok=0
    done
    ((ok)) && { echo "$t"; return 0; }
    sleep 1; t=$((t + 1))
  done
  echo "$t"; return 1
}

# recovered WHAT TIMEOUT: after WHAT's outage (the watch running): every
# worker ready again within TIMEOUT s (READY_AFTER), the backlog drained,
# the watch stopped; NOT_READY: seconds in which some worker was not ready,
# which must be some (readiness reflects the outage).
recovered() {
  READY_AFTER=$(all_ready "$2") || fail "the workers were not all ready ${READY_AFTER}s after the $1 returned"
  echo "all workers ready ${READY_AFTER}s after the $1 returned" >&2
  drained 600 || fail "the backlog did not drain"
  unwatch
  NOT_READY=$(awk '{for (i = 3; i <= NF; i++) if ($i != 200) {n++; break}} END {print n + 0}' "$OUT/watch.log")
  [ "$NOT_READY" -gt 0 ] || fail "readiness never reflected the $1 outage"
}

# peak_rss_mib: the highest RSS sampled of any worker of the scenario.
peak_rss_mib() {
  cat "$OUT"/w*.rss 2>/dev/null | sort -n | tail -1 | awk '{printf "%.0f", $1 / 1024}'
}

# metric URL NAME: the sum of a counter over its label sets on one worker.
metric() {
  curl -sf "$1/metrics" 2>/dev/null | awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $2} END {print s + 0}'
}

# judge [KEY=VALUE...]: check, then record (below). Exit status: the
# check's, failed if any scenario expectation failed.
judge() {
  check_run
  record "$@"
}

# check_run: stops the workers, runs `tracking check` (store, dead-letter
# topic, recount) into $OUT/check.json; CHECK_RC is its status.
check_run() {
  stop_workers
  set +e
  "$BIN" check --manifest "$OUT/manifest.jsonl" --scylla-nodes "$SCYLLA_NODES" \
    --scylla-keyspace "$KS" --scylla-consistency "$STORE_CONSISTENCY" --pulsar-url "$PULSAR_URL" \
    --topic "$TOPIC" --wait 60s --report "$OUT/check.json" >"$OUT/check.log" 2>"$OUT/check.err"
  CHECK_RC=$?
  set -e
  cat "$OUT/check.log" >&2
}

# record [KEY=VALUE...]: prints and appends the scenario's summary line
# (extra facts as KEY=VALUE), drops the run's topic and keyspace if it
# passed; returns non-zero if the check or an expectation failed.
record() {
  local rc=$CHECK_RC
  [ "${FEED_RC:-0}" = 0 ] || fail "the generator failed (exit $FEED_RC): $OUT/feed.log"
  [ -z "$SCENARIO_FAIL" ] || rc=1
  python3 - "$OUT" "$SCENARIO" "$FORM" "$rc" "$SUMMARY" "$@" ${SCENARIO_FAIL:+"failed=$SCENARIO_FAIL"} <<'PY'
import json, os, sys
out, name, form, rc, summary, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
c = json.load(open(os.path.join(out, "check.json"))) if os.path.exists(os.path.join(out, "check.json")) else {}
f = json.load(open(os.path.join(out, "feed.json"))) if os.path.exists(os.path.join(out, "feed.json")) else {}
row = {
    "scenario": name, "form": form, "result": "PASS" if rc == "0" else "FAIL",
    "sent": f.get("sent"), "valid": c.get("expected"), "stored": c.get("events"),
    "lost": c.get("lost"), "duplicated": c.get("duplicated"), "unexpected": c.get("unexpected"),
    "dead_lettered": c.get("dead_lettered"), "missing_dead_letters": c.get("missing_dead_letters"),
    "good_dead_lettered": c.get("good_dead_lettered"), "gaps": c.get("gaps"),
    "out_of_order": c.get("out_of_order"), "verify_differences": c.get("verify_differences"),
    "send_retries": f.get("retries"),
}
for kv in extra:
    k, _, v = kv.partition("=")
    row[k] = v
os.makedirs(os.path.dirname(summary), exist_ok=True)
with open(summary, "a") as s:
    s.write(json.dumps(row) + "\n")
print("  ".join(f"{k}={v}" for k, v in row.items()))
PY
  if [ "$rc" = 0 ]; then drop_run; else echo "kept keyspace $KS and topic $TOPIC for inspection" >&2; fi
  return "$rc"
}

# fail REASON: a scenario-specific expectation did not hold (judge then fails).
SCENARIO_FAIL=""
fail() { echo "EXPECTATION FAILED: $*" >&2; SCENARIO_FAIL+="$*; "; }

# watch_progress FILE: every second, one line "unix-time" and, per worker,
# "persisted,store_errors,retried" (its counters of events persisted, store
# errors and commands retried; "-" when it does not answer), until unwatch:
# the timeline of progress that stalls are measured on.
watch_progress() {
  touch "$OUT/.watching"
  (
    while [ -f "$OUT/.watching" ]; do
      local line u
      line=$(date +%s.%N)
      for u in "${WORKER_URLS[@]}"; do
        line+=" $(curl -sf -m 1 "$u/metrics" 2>/dev/null | awk '
          $1 == "tracking_events_persisted_total" || index($1, "tracking_events_persisted_total{") == 1 {p += $2; seen = 1}
          $1 == "tracking_store_errors_total" || index($1, "tracking_store_errors_total{") == 1 {e += $2}
          $1 == "tracking_commands_retried_total" || index($1, "tracking_commands_retried_total{") == 1 {r += $2}
          END {if (seen) printf "%d,%d,%d", p, e, r; else printf "-"}')"
      done
      echo "$line" >>"$1"
      sleep 1
    done
  ) &
}
