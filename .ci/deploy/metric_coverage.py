#!/usr/bin/env python3
"""Checks that every metric the worker exports is watched somewhere: on a
dashboard panel, in an alert rule, or in the table of series not charted in
the operations guide (with the reason), and that the table names only
metrics that exist and are not charted after all.

    metric_coverage.py --source src/internal_events --doc docs/operations.md \\
        compose/grafana/dashboards/tracking.json compose/prometheus/alerts.yml

The exported metrics are read from the source (`exported.py`), not from a
scrape: an embedded-mode scrape lacks the Pulsar-only series. A histogram
counts as used when any of its `_bucket`, `_sum` or `_count` series is.

The table is the first Markdown table under the heading that starts with
"Series not charted" in --doc; each row's first cell names one or more
metrics in backticks. Prints where each metric is used. Standard library
only.
"""
import argparse
import pathlib
import re
import sys

from exported import source_metrics
from metric_names import from_dashboard, yaml_exprs, metric_names

TABLE_HEADING = "series not charted"


def alert_uses(path: pathlib.Path) -> dict:
    """{metric: [alert or record name, ...]} of a rules file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    owner = {}
    current = None
    for i, line in enumerate(lines, 1):
        m = re.match(r"^\s*-?\s*(alert|record):\s*(\S+)", line)
        if m:
            current = m.group(2)
        owner[i] = current
    found = {}
    for line, expr in yaml_exprs(path):
        for n in metric_names(expr):
            found.setdefault(n, []).append(f"alert {owner.get(line) or path.name}")
    return found


def doc_table(path: pathlib.Path):
    """[(line number, [metric, ...]), ...] of the not-charted table, or None
    when the heading is missing."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, l in enumerate(lines)
                  if re.match(r"^#{2,4}\s+", l) and l.lstrip("#").strip().lower().startswith(TABLE_HEADING)), None)
    if start is None:
        return None
    rows, in_table = [], False
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if re.match(r"^#{1,4}\s", line):
            break
        if line.startswith("|"):
            in_table = True
            first = line.strip().strip("|").split("|")[0]
            if re.fullmatch(r"\s*:?-{3,}:?\s*", first):
                continue
            names = re.findall(r"`([A-Za-z_:][A-Za-z0-9_:]*)`", first)
            if names:
                rows.append((i + 1, names))
        elif in_table:
            break
    return rows


def base_name(name: str, declared: dict) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and declared.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, type=pathlib.Path)
    ap.add_argument("--doc", required=True, type=pathlib.Path)
    ap.add_argument("files", nargs="+", type=pathlib.Path, help="dashboards (*.json) and rules files")
    args = ap.parse_args()

    problems = []
    declared = source_metrics(args.source, problems)
    charted, alerted = {}, {}
    for f in args.files:
        uses = from_dashboard(f) if f.suffix == ".json" else alert_uses(f)
        into = charted if f.suffix == ".json" else alerted
        for n, where in uses.items():
            into.setdefault(base_name(n, declared), []).extend(where)
    rows = doc_table(args.doc)
    documented = {}
    if rows is None:
        problems.append(f"{args.doc}: no heading starting with 'Series not charted'")
        rows = []
    for line, names in rows:
        for n in names:
            if n in documented:
                problems.append(f"{args.doc}:{line}: {n} is listed twice (also line {documented[n]})")
            documented[n] = line
            if n not in declared:
                problems.append(f"{args.doc}:{line}: {n} is listed as not charted, but the worker exports no such metric")
            elif n in charted:
                problems.append(f"{args.doc}:{line}: {n} is listed as not charted, but is on the dashboard"
                                f" ({', '.join(sorted(set(charted[n])))})")

    width = max(len(n) for n in declared) if declared else 0
    for n in sorted(declared):
        where = sorted(set(charted.get(n, []))) + sorted(set(alerted.get(n, [])))
        if n in documented:
            where.append(f"{args.doc}:{documented[n]} (not charted)")
        print(f"  {n:<{width}}  {'; '.join(where) if where else 'NOWHERE'}")
        if not where:
            problems.append(f"{n} ({declared[n]}) is on no panel, in no alert, and not in the"
                            f" 'Series not charted' table of {args.doc}")

    for p in problems:
        print(f"  FAIL: {p}")
    if not problems:
        print(f"coverage: {len(declared)} metrics: {sum(1 for n in declared if n in charted)} charted,"
              f" {sum(1 for n in declared if n in alerted)} in alerts,"
              f" {len(documented)} listed as not charted in {args.doc}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
