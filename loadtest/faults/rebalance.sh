#!/usr/bin/env bash
# Rebalancing: workers join and leave during load (Key_Shared moves keys
# between consumers): start with one, then alternately add workers (up to
# three) and stop the oldest with SIGTERM, CHANGES times (4 short, 12
# long). The judge: no duplicate event, no gap, per-user send order kept.
#
#   loadtest/faults/rebalance.sh       FORM=long CHANGES=12
source "$(dirname "$0")/lib.sh"
if [ "$FORM" = long ]; then CHANGES=${CHANGES:-12}; else CHANGES=${CHANGES:-4}; fi
begin rebalance
WORKER_PIDS=(); WORKER_URLS=()
worker_n 1
next=2
feed
step=$(( DURATION / (CHANGES + 1) ))
((step >= 1)) || step=1
for c in $(seq 1 "$CHANGES"); do
  sleep "$step"
  if (( ${#WORKER_PIDS[@]} < 3 && (c % 2 == 1 || ${#WORKER_PIDS[@]} < 2) )); then
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
done
drained 600 || fail "the backlog did not drain"
judge changes="$CHANGES" workers_at_end="${#WORKER_PIDS[@]}"
