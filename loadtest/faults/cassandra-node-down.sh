#!/usr/bin/env bash
# Cassandra node down: the store is a three-node Apache Cassandra cluster on
# loopback addresses (compose/native/cassandra-cluster.sh: 127.0.0.2-4,
# replication factor 3), WORKERS workers (3) write and read at QUORUM
# listing all three nodes. Under load, DOWN nodes (1) are killed with
# SIGKILL (FAULT=kill) or frozen with SIGSTOP (FAULT=freeze: a node that
# neither answers nor closes its connections) KILL_AT seconds into the run
# (a third of it), kept down for OUTAGE seconds (60), then restarted (or
# thawed) and left to rejoin while the generator keeps publishing.
#
# With one node down a quorum (2 of 3) still holds, so the workers must
# keep going: readiness 200 on every sample, and no stall (a stretch in
# which a worker persisted less than a tenth of its share of the rate,
# sampled about every second) longer than the driver's request timeout
# REQUEST_TIMEOUT (5 s) plus two sample intervals (either end of a stretch
# is known to within one). With two down
# no quorum exists: readiness must turn 503, the backlog must grow (nothing
# acknowledged without a quorum), and the workers must be ready again by
# themselves within 180 s of the nodes' return. During the outage a probe
# POSTs PROBES commands (5) of a user of its own to worker 1 and reads that
# user's interactions and stats: what a user gets (the probe's commands join
# the manifest, so the judge counts them too). Then the judge, as in every
# scenario.
#
# Long form only: three JVMs of Cassandra beside Pulsar, the workers and the
# generator on 2 cores are too heavy for CI's short run, so run.sh runs it
# only when named. RATE defaults to 200/s (what that machine sustains with
# all of them).
#
#   FORM=long loadtest/faults/cassandra-node-down.sh
#   FORM=long DOWN=2 DURATION=180 OUTAGE=45 loadtest/faults/cassandra-node-down.sh
#   FORM=long FAULT=freeze loadtest/faults/cassandra-node-down.sh
RATE=${RATE:-200}
source "$(dirname "$0")/lib.sh"
CASSANDRA=$NATIVE/cassandra-cluster.sh
STORE_REPLICATION=SimpleStrategy:3
STORE_CONSISTENCY=quorum
DOWN=${DOWN:-1}
FAULT=${FAULT:-kill}
WORKERS=${WORKERS:-3}
OUTAGE=${OUTAGE:-60}
KILL_AT=${KILL_AT:-$((DURATION / 3))}
REQUEST_TIMEOUT=${REQUEST_TIMEOUT:-5}
PROBES=${PROBES:-5}
case "$DOWN" in 1 | 2) ;; *) echo "DOWN must be 1 or 2" >&2; exit 2 ;; esac
case "$FAULT" in kill | freeze) ;; *) echo "FAULT must be kill or freeze" >&2; exit 2 ;; esac
# The first node is the seed and the first contact point (where the driver's
# control connection starts): the harder one to lose.
NODES=$(seq 1 "$DOWN")

name=cassandra-node-down
[ "$DOWN" = 1 ] || name=cassandra-nodes-down-$DOWN
[ "$FAULT" = kill ] || name+=-$FAULT
begin "$name"
# A failed run must leave no frozen node, sampler or worker behind (a killed
# node is started again by the next run's stack_up).
VMSTAT_PID=""
cleanup() {
  local n p
  if [ "$FAULT" = freeze ]; then
    for n in $NODES; do p=$("$CASSANDRA" pid "$n"); [ -z "$p" ] || kill -CONT "$p" 2>/dev/null || true; done
  fi
  rm -f "$OUT/.watching"
  [ -z "$VMSTAT_PID" ] || kill "$VMSTAT_PID" 2>/dev/null || true
  stop_workers
}
trap cleanup EXIT
WORKER_PIDS=(); WORKER_URLS=()
for i in $(seq 1 "$WORKERS"); do worker_n "$i" --scylla-request-timeout "${REQUEST_TIMEOUT}s"; done
feed
watch "$OUT/watch.log"
watch_progress "$OUT/progress.log"
# The machine's CPU over the run: what the rate costs beside three JVMs.
vmstat -n 5 >"$OUT/vmstat.log" 2>&1 &
VMSTAT_PID=$!
sleep "$KILL_AT"

before=$(backlog)
t_fault=$(date +%s)
for n in $NODES; do
  pid=$("$CASSANDRA" pid "$n")
  if [ "$FAULT" = kill ]; then
    echo "SIGKILL Cassandra node $n (pid $pid, backlog $before)" >&2
    "$CASSANDRA" kill "$n" >>"$OUT/cassandra-fault.log" 2>&1
  else
    echo "SIGSTOP Cassandra node $n (pid $pid, backlog $before)" >&2
    kill -STOP "$pid"
  fi
done

# What a user gets meanwhile: a few seconds in, POSTs of a user of the
# probe's own (status and seconds, one per line), then reads of that user.
sleep 10
probe_user=probe-$name-$STAMP
: >"$OUT/probe.jsonl"
for k in $(seq 1 "$PROBES"); do
  id=$(python3 -c 'import uuid; print(uuid.uuid4())')
  body=$(printf '{"interaction_id":"%s","user_id":"%s","interaction_type":"click","target":{"id":"post-%s","type":"post"},"campaign_id":"c-probe","affiliate_id":"a-probe","occurred_at":"%s"}' \
    "$id" "$probe_user" "$k" "$(date -u +%Y-%m-%dT%H:%M:%SZ)")
  r=$(curl -s -o /dev/null -m 30 -w '%{http_code} %{time_total}' -X POST -H 'Content-Type: application/json' \
    -d "$body" "${WORKER_URLS[1]}/tracking/interactions" || true)
  echo "POST $r" >>"$OUT/probe.log"
  [ "${r%% *}" = 202 ] && printf '{"id":"%s","user":"%s","kind":"valid"}\n' "$id" "$probe_user" >>"$OUT/probe.jsonl"
done
for path in "users/$probe_user/interactions?limit=100" "users/$probe_user/stats" "stats/status"; do
  r=$(curl -s -o "$OUT/probe-read.body" -m 30 -w '%{http_code} %{time_total}' "${WORKER_URLS[1]}/tracking/$path" || true)
  what=${path%%\?*}; what=${what##*/}
  echo "GET $what $r $(head -c 200 "$OUT/probe-read.body")" >>"$OUT/probe.log"
done
r=$(curl -s -m 5 "${WORKER_URLS[1]}/tracking/ready" || true)
echo "ready: $r" >>"$OUT/probe.log"
sed 's/^/  probe: /' "$OUT/probe.log" >&2

sleep $((OUTAGE - ($(date +%s) - t_fault) > 0 ? OUTAGE - ($(date +%s) - t_fault) : 0))
during=$(backlog)
t_back=$(date +%s)
for n in $NODES; do
  if [ "$FAULT" = kill ]; then
    echo "starting Cassandra node $n again (backlog $during)" >&2
    "$CASSANDRA" start "$n" >>"$OUT/cassandra-start.log" 2>&1 || fail "Cassandra node $n did not come back"
  else
    echo "SIGCONT Cassandra node $n (backlog $during)" >&2
    kill -CONT "$("$CASSANDRA" pid "$n")"
  fi
done
rejoin_s=$(($(date +%s) - t_back))

READY_AFTER=$(all_ready 180) || fail "the workers were not all ready ${READY_AFTER}s after the nodes returned"
drained 600 || fail "the backlog did not drain"
sleep 2
unwatch
kill "$VMSTAT_PID" 2>/dev/null || true
NOT_READY=$(awk '{for (i = 3; i <= NF; i++) if ($i != 200) {n++; break}} END {print n + 0}' "$OUT/watch.log")
peak_backlog=$(awk '$2 ~ /^[0-9]+$/ && $2 > m {m = $2} END {print m + 0}' "$OUT/watch.log")

# The probe's user, read back once everything is drained: every accepted
# POST is there.
probe_stored=$(curl -sf "${WORKER_URLS[1]}/tracking/users/$probe_user/interactions?limit=100" |
  python3 -c 'import json, sys; print(len(json.load(sys.stdin)["items"]))' 2>/dev/null || echo unknown)
probe_accepted=$(wc -l <"$OUT/probe.jsonl")
[ "$probe_stored" = "$probe_accepted" ] || fail "the probe's user has $probe_stored interactions, $probe_accepted POSTs were accepted"
cat "$OUT/probe.jsonl" >>"$OUT/manifest.jsonl"

for i in $(seq 1 "$WORKERS"); do curl -sf "${WORKER_URLS[i]}/metrics" >"$OUT/w$i.metrics" 2>/dev/null || true; done
sum_metric() { cat "$OUT"/w*.metrics 2>/dev/null | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {print s + 0}'; }

# Stalls: the longest stretch in which the fleet persisted less than a
# tenth of the offered rate (samples about a second apart), between its
# first progress and the drained end; and the same for each worker, against
# a tenth of its share, since a worker's users wait when it stalls. Either
# end of a stretch is known to within one sample (SAMPLE_S apart on average):
# a stall may measure up to two samples longer than it was.
read -r stall stall_at worker_stall worker_stall_at sample_s < <(python3 - "$OUT/progress.log" "$RATE" "$WORKERS" <<'PY'
import sys, time
path, rate, nworkers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rows = []
for line in open(path):
    f = line.split()
    rows.append((float(f[0]), [int(c.split(",")[0]) if c != "-" else None for c in f[1:]]))
def longest(series, floor):
    pts = [(t, v) for t, v in series if v is not None]
    if len(pts) < 2:
        return 0.0, 0.0
    final = pts[-1][1]
    start = next((i for i in range(1, len(pts)) if pts[i][1] > pts[0][1]), None)
    if start is None:
        return 0.0, 0.0
    best, at, run, run_at = 0.0, 0.0, 0.0, 0.0
    for (t0, v0), (t1, v1) in zip(pts[start:], pts[start + 1:]):
        if v0 >= final:
            break
        if (v1 - v0) / (t1 - t0) < floor:
            if run == 0.0:
                run_at = t0
            run += t1 - t0
            if run > best:
                best, at = run, run_at
        else:
            run = 0.0
    return best, at
fleet = longest([(t, sum(v for v in vs if v is not None) if all(v is not None for v in vs) else None) for t, vs in rows], rate / 10)
workers = [longest([(t, vs[i]) for t, vs in rows], rate / nworkers / 10) for i in range(len(rows[0][1]))]
w = max(workers)
hm = lambda t: time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"
gaps = [b[0] - a[0] for a, b in zip(rows, rows[1:])]
print(f"{fleet[0]:.1f} {hm(fleet[1])} {w[0]:.1f} {hm(w[1])} {sum(gaps) / max(len(gaps), 1):.2f}")
PY
)
echo "longest stall: fleet ${stall}s (from $stall_at), one worker ${worker_stall}s (from $worker_stall_at); request timeout ${REQUEST_TIMEOUT}s, samples ${sample_s}s apart" >&2

if [ "$DOWN" = 1 ]; then
  [ "$NOT_READY" = 0 ] || fail "readiness left 200 for $NOT_READY s with a quorum available"
  python3 -c "import sys; sys.exit(0 if $worker_stall <= $REQUEST_TIMEOUT + 2 * $sample_s else 1)" ||
    fail "a worker made almost no progress for ${worker_stall}s (from $worker_stall_at), past the request timeout of ${REQUEST_TIMEOUT}s and two samples of ${sample_s}s"
else
  [ "$NOT_READY" -gt 0 ] || fail "readiness stayed 200 without a quorum"
  [ "$during" != unknown ] && [ "$during" -gt "$before" ] || fail "the backlog did not grow without a quorum ($before -> $during): acknowledged without a store?"
fi

judge down="$DOWN" fault="$FAULT" workers="$WORKERS" rate="$RATE" outage_s="$OUTAGE" fault_at_s="$KILL_AT" \
  rejoin_s="$rejoin_s" request_timeout_s="$REQUEST_TIMEOUT" longest_stall_s="$stall" longest_stall_at="$stall_at" \
  longest_worker_stall_s="$worker_stall" longest_worker_stall_at="$worker_stall_at" sample_s="$sample_s" \
  not_ready_s="$NOT_READY" ready_after_return_s="$READY_AFTER" backlog_before="$before" \
  backlog_end_of_outage="$during" peak_backlog="$peak_backlog" peak_rss_mib="$(peak_rss_mib)" \
  probe_posts="$(awk '$1 == "POST" {print $2}' "$OUT/probe.log" | sort | uniq -c | awk '{printf "%s%sx%s", s, $1, $2; s = ","}')" \
  probe_reads="$(awk '$1 == "GET" {printf "%s%s:%s", s, $2, $3; s = ","}' "$OUT/probe.log")" \
  probe_stored="$probe_stored" store_errors="$(sum_metric tracking_store_errors_total)" \
  retried="$(sum_metric tracking_commands_retried_total)" redelivered="$(sum_metric tracking_commands_redelivered_total)" \
  writes_abandoned="$(sum_metric tracking_writes_abandoned_total)"
