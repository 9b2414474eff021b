#!/usr/bin/env bash
# Broker restart: two workers under load; Apache Pulsar is stopped mid-run
# for OUTAGE seconds (10) and started again. The workers must reconnect by
# themselves (every worker ready again within 120 s of the broker's
# return), readiness must reflect the outage (503 seen), the generator's
# failed sends are retried, and the judge finds nothing lost or doubled.
#
#   loadtest/faults/broker-restart.sh  FORM=long OUTAGE=30
source "$(dirname "$0")/lib.sh"
OUTAGE=${OUTAGE:-10}
begin broker-restart
WORKER_PIDS=(); WORKER_URLS=()
for i in 1 2; do worker_n "$i"; done
feed
watch "$OUT/watch.log"
sleep $((DURATION / 3))
echo "stopping Pulsar (backlog $(backlog))" >&2
"$NATIVE/pulsar.sh" down >"$OUT/pulsar-down.log" 2>&1
sleep "$OUTAGE"
echo "starting Pulsar again" >&2
"$NATIVE/pulsar.sh" up >"$OUT/pulsar-up.log" 2>&1 || fail "Pulsar did not come back"
recovered broker 120
judge outage_s="$OUTAGE" not_ready_s="$NOT_READY" ready_after_return_s="$READY_AFTER"
