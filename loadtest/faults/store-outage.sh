#!/usr/bin/env bash
# Store outage: three workers under load; Apache Cassandra is stopped
# mid-run for OUTAGE seconds (30) and started again while the generator
# keeps publishing. Expected: readiness turns 503 during the outage, the
# workers stop acknowledging (the subscription's backlog grows) instead of
# buffering without limit (peak worker RSS under MEM_LIMIT_MIB, 384), no
# good command is dead-lettered for a transient store error, and after the
# store returns everything completes (the judge).
#
#   loadtest/faults/store-outage.sh    FORM=long OUTAGE=30
source "$(dirname "$0")/lib.sh"
OUTAGE=${OUTAGE:-30}
MEM_LIMIT_MIB=${MEM_LIMIT_MIB:-384}
begin store-outage
WORKER_PIDS=(); WORKER_URLS=()
for i in 1 2 3; do worker_n "$i"; done
feed
watch "$OUT/watch.log"
sleep $((DURATION / 3))
before=$(backlog)
echo "stopping Cassandra (backlog $before)" >&2
"$NATIVE/cassandra.sh" down >"$OUT/cassandra-down.log" 2>&1
sleep "$OUTAGE"
during=$(backlog)
echo "starting Cassandra again (backlog $during)" >&2
"$NATIVE/cassandra.sh" up >"$OUT/cassandra-up.log" 2>&1 || fail "Cassandra did not come back"
recovered store 180
peak_backlog=$(awk '$2 ~ /^[0-9]+$/ && $2 > m {m = $2} END {print m + 0}' "$OUT/watch.log")
peak=$(peak_rss_mib)
[ "$during" != unknown ] && [ "$during" -gt "$before" ] || fail "the backlog did not grow during the outage ($before -> $during): were messages acknowledged without a store?"
[ "${peak:-0}" -le "$MEM_LIMIT_MIB" ] || fail "a worker's RSS reached ${peak} MiB (limit ${MEM_LIMIT_MIB})"
judge outage_s="$OUTAGE" not_ready_s="$NOT_READY" backlog_before="$before" backlog_end_of_outage="$during" peak_backlog="$peak_backlog" peak_rss_mib="$peak" ready_after_return_s="$READY_AFTER"
