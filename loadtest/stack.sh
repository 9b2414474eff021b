# Helpers of the real-stack scenarios (sourced after lib.sh): Apache Pulsar
# and Apache Cassandra 5 started natively from Maven Central artifacts
# (compose/native/*.sh), workers in Pulsar mode on the ScyllaDB store.
#
# Every run gets its own partitioned commands topic and its own keyspace,
# so runs never see each other's backlog or data.

NATIVE=$ROOT/compose/native
PARTITIONS=${PARTITIONS:-4}
# The store: one Cassandra node by default. A scenario on a cluster sets
# CASSANDRA to compose/native/cassandra-cluster.sh (same subcommands),
# STORE_REPLICATION (e.g. SimpleStrategy:3) and STORE_CONSISTENCY (quorum:
# a replication factor above 1 must read its own writes).
CASSANDRA=${CASSANDRA:-$NATIVE/cassandra.sh}
STORE_REPLICATION=${STORE_REPLICATION:-}
STORE_CONSISTENCY=${STORE_CONSISTENCY:-one}
STAMP=$(date +%s)
WORKER_PIDS=()
# A scenario that fails half-way (set -e) must not leave its workers
# running: they would keep consuming CPU beside the next runs.
trap 'stop_workers' EXIT

stack_up() {
  "$NATIVE/pulsar.sh" status >/dev/null 2>&1 || "$NATIVE/pulsar.sh" up >&2
  "$CASSANDRA" status >/dev/null 2>&1 || "$CASSANDRA" up >&2
  eval "$("$NATIVE/pulsar.sh" env)"
  eval "$("$CASSANDRA" env)"
  ADMIN=${PULSAR_ADMIN_URL:-http://127.0.0.1:8080}
}

# new_run NAME: a fresh partitioned topic (TOPIC) and keyspace (KS) with the
# schema applied by `tracking schema apply`.
new_run() {
  local name=$1
  TOPIC=persistent://public/default/lt-$name-$STAMP
  KS=lt_${name//-/_}_$STAMP
  curl -sf -X PUT -H 'Content-Type: application/json' -d "$PARTITIONS" \
    "$ADMIN/admin/v2/persistent/public/default/lt-$name-$STAMP/partitions" >/dev/null
  "$BIN" schema apply --scylla-nodes "$SCYLLA_NODES" --scylla-keyspace "$KS" \
    ${STORE_REPLICATION:+--replication "$STORE_REPLICATION"} >/dev/null 2>&1
}

# stack_args: the flags of a worker of the current run.
stack_args() {
  echo --pulsar-url "$PULSAR_URL" --topic-commands "$TOPIC" --subscription loadtest \
    --scylla-nodes "$SCYLLA_NODES" --scylla-keyspace "$KS" --scylla-consistency "$STORE_CONSISTENCY"
}

# start_workers N DIR: N workers of the current run; pids in WORKER_PIDS,
# URLs in WORKER_URLS.
start_workers() {
  local n=$1 dir=$2 i
  WORKER_PIDS=(); WORKER_URLS=()
  for i in $(seq 1 "$n"); do
    # shellcheck disable=SC2046
    start_worker "$dir/w$i" $(stack_args)
    WORKER_PIDS+=("$WORKER_PID"); WORKER_URLS+=("$WORKER_URL")
  done
}

stop_workers() {
  local p
  for p in "${WORKER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${WORKER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  WORKER_PIDS=()
}

# drop_run: the run's keyspace, topic and dead-letter topic (disk space).
drop_run() {
  "$CASSANDRA" cql "DROP KEYSPACE IF EXISTS $KS" >/dev/null 2>&1 || true
  curl -sf -X DELETE "$ADMIN/admin/v2/persistent/public/default/${TOPIC##*/}/partitions?force=true" >/dev/null 2>&1 || true
  curl -sf -X DELETE "$ADMIN/admin/v2/persistent/public/default/${TOPIC##*/}-DLQ?force=true" >/dev/null 2>&1 || true
}

# verify_run: `tracking verify` against the run's keyspace; prints its last line.
verify_run() {
  "$BIN" verify --scylla-nodes "$SCYLLA_NODES" --scylla-keyspace "$KS" --scylla-consistency "$STORE_CONSISTENCY" 2>/dev/null | tail -1
}

# stack_run NAME WORKERS SEED REPORT: one run of $BIN on a fresh topic and
# keyspace: WORKERS workers, the generator posting RATE/s for DURATION over
# USERS users to the first worker (a POST only publishes; every worker
# consumes its share), a JSON report at REPORT; prints the persisted rate
# and the check. The run's topic, keyspace and data dirs are dropped after.
stack_run() {
  local name=$1 n=$2 seed=$3 report=$4
  new_run "$name"
  start_workers "$n" "$OUT/run-$name"
  "$BIN" loadgen --url "${WORKER_URLS[0]}" --rate "$RATE" --duration "$DURATION" --users "$USERS" \
    --connections 64 --seed "$seed" --drain-timeout 600s --report "$report" >"$report.log" 2>&1 || true
  stop_workers
  drop_run
  rm -rf "$OUT/run-$name"
  echo "$name: $(python3 -c "import json;r=json.load(open('$report'));print(f\"persisted {r['persisted_rate']:.0f}/s, check {'ok' if r['check_passed'] else 'FAILED'}\")" 2>/dev/null || echo 'no report')" >&2
}
