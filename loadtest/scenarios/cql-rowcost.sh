#!/usr/bin/env bash
# Cassandra's CPU per row for each request shape the ScyllaDB store could
# use (examples/cql_rowcost.rs): plain insert, IF NOT EXISTS, single- and
# multi-partition unlogged batches, point and IN reads; medians of RUNS,
# after one warm-up pass (the JVM compiles its hot paths on first use).
#
#   loadtest/scenarios/cql-rowcost.sh        RUNS=3 ROWS=40000 ONLY=<shape substring>
source "$(dirname "$0")/../lib.sh"
NATIVE=$ROOT/compose/native
"$NATIVE/cassandra.sh" status >/dev/null 2>&1 || "$NATIVE/cassandra.sh" up >&2
eval "$("$NATIVE/cassandra.sh" env)"
(cd "$ROOT" && cargo build --profile profiling --quiet --example cql_rowcost)
pid=$(cat "${TRACKING_NATIVE_HOME:-$HOME/.cache/alpes-tracking-native}/cassandra/run/cassandra.pid")
OUT=$RESULTS/cql-rowcost; mkdir -p "$OUT"
"$ROOT/target/profiling/examples/cql_rowcost" --nodes "$SCYLLA_NODES" --pid "$pid" \
  --runs "${RUNS:-3}" --rows "${ROWS:-40000}" ${ONLY:+--only "$ONLY"} | tee "$OUT/rowcost.txt"
