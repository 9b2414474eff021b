#!/usr/bin/env bash
# The whole fault suite, scenario after scenario, then a summary table.
# FORM=short (CI: about 40 s of load each) or FORM=long (by hand: 5 min of
# load each, 20 kills, 12 membership changes, 6 pauses). Exits 1 if any failed.
#
#   loadtest/faults/run.sh                    FORM=long loadtest/faults/run.sh
#   loadtest/faults/run.sh crash poison       (a subset)
#
# cassandra-node-down (a three-node Cassandra cluster) is not in the default
# list: three more JVMs are too heavy for the short form on CI's 2 cores.
# Name it to run it: FORM=long loadtest/faults/run.sh cassandra-node-down
set -uo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)
RESULTS=${RESULTS:-$DIR/../results}
export FORM=${FORM:-short}
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(crash graceful poison rebalance broker-restart store-outage pause)
: >"$RESULTS/faults/summary.tsv" 2>/dev/null || { mkdir -p "$RESULTS/faults"; : >"$RESULTS/faults/summary.tsv"; }
failed=()
for s in "${scenarios[@]}"; do
  t0=$SECONDS
  if "$DIR/$s.sh"; then r=PASS; else r=FAIL; failed+=("$s"); fi
  echo "== $s: $r ($((SECONDS - t0)) s)" >&2
done
python3 - "$RESULTS/faults/summary.tsv" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cols = ["scenario", "form", "result", "sent", "valid", "stored", "lost", "duplicated",
        "unexpected", "dead_lettered", "good_dead_lettered", "gaps", "out_of_order", "verify_differences"]
print("| " + " | ".join(cols) + " | other |")
print("|" + "---|" * (len(cols) + 1))
for r in rows:
    other = ", ".join(f"{k}={v}" for k, v in r.items() if k not in cols)
    print("| " + " | ".join(str(r.get(c, "")) for c in cols) + f" | {other} |")
PY
if [ ${#failed[@]} -gt 0 ]; then echo "fault suite FAILED: ${failed[*]}" >&2; exit 1; fi
echo "fault suite passed ($FORM form)" >&2
