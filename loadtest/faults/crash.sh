#!/usr/bin/env bash
# Worker crash: three workers on one Key_Shared subscription; a random
# worker is killed with SIGKILL at a random moment and restarted a moment
# later, KILLS times (3 in the short form, 20 in the long one), while the
# others keep going. Passes on the judge's zero lost / duplicated /
# unexpected, gap-free per-user sequences in send order, every refused
# message dead-lettered and no good one, and a clean recount.
#
#   loadtest/faults/crash.sh          FORM=long KILLS=20 RATE=300 DURATION=300
source "$(dirname "$0")/lib.sh"
if [ "$FORM" = long ]; then KILLS=${KILLS:-20}; else KILLS=${KILLS:-3}; fi
begin crash
WORKER_PIDS=(); WORKER_URLS=()
for i in 1 2 3; do worker_n "$i"; done
feed
# Kills spread over the run: one in every slice, at a random point of it.
slice=$(( (DURATION - 5) / KILLS ))
((slice >= 2)) || slice=2
for k in $(seq 1 "$KILLS"); do
  at=$(( RANDOM % (slice - 1) + 1 ))
  sleep "$at"
  i=$(( RANDOM % 3 + 1 ))
  echo "kill $k/$KILLS: SIGKILL worker $i (pid ${WORKER_PIDS[i]}), backlog $(backlog)" >&2
  kill -KILL "${WORKER_PIDS[i]}" 2>/dev/null || true
  wait "${WORKER_PIDS[i]}" 2>/dev/null || true
  sleep 1
  worker_n "$i"
  sleep $(( slice - at > 1 ? slice - at - 1 : 0 ))
done
drained 600 || fail "the backlog did not drain"
judge kills="$KILLS"
