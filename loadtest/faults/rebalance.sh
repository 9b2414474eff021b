#!/usr/bin/env bash
# Rebalancing: workers join and leave during load (Key_Shared moves keys
# between consumers). Start with one worker; then, CHANGES times (4 short,
# 12 long), in a cycle of join, join, leave, leave: a new worker joins, or
# the oldest leaves with SIGTERM (1 -> 2 -> 3 -> 2 -> 1 -> ...). The judge:
# no duplicate event, no gap, per-user send order kept; every leaving
# worker exits 0.
#
#   loadtest/faults/rebalance.sh       FORM=long CHANGES=12
source "$(dirname "$0")/lib.sh"
if [ "$FORM" = long ]; then CHANGES=${CHANGES:-12}; else CHANGES=${CHANGES:-4}; fi
begin rebalance
WORKER_PIDS=(); WORKER_URLS=()
worker_n 1
next=2
most=1
feed
step=$(( DURATION / (CHANGES + 1) ))
((step >= 1)) || step=1
for c in $(seq 1 "$CHANGES"); do
  sleep "$step"
  if (( (c - 1) % 4 < 2 )); then
    echo "change $c/$CHANGES: worker $next joins (backlog $(backlog))" >&2
    worker_n "$next"; next=$((next + 1))
  else
    old=$(printf '%s\n' "${!WORKER_PIDS[@]}" | sort -n | head -1)
    echo "change $c/$CHANGES: worker $old leaves (SIGTERM, backlog $(backlog))" >&2
    kill -TERM "${WORKER_PIDS[old]}"
    set +e; wait "${WORKER_PIDS[old]}"; rc=$?; set -e
    [ "$rc" = 0 ] || fail "worker $old exited $rc on SIGTERM"
    unset "WORKER_PIDS[old]" "WORKER_URLS[old]"
  fi
  (( ${#WORKER_PIDS[@]} > most )) && most=${#WORKER_PIDS[@]}
done
drained 600 || fail "the backlog did not drain"
judge changes="$CHANGES" most_workers="$most" workers_at_end="${#WORKER_PIDS[@]}"
