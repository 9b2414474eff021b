#!/usr/bin/env python3
"""Structure checks of a Grafana dashboard JSON (standard library only):
uid and title set, panel ids unique, every panel placed on the 24-column grid
without overlapping another, every query on the dashboard's datasource
variable, and that variable defaulting to the datasource uid that
compose/grafana/provisioning provisions ("prometheus"). With --promtool,
every query must parse as PromQL: the queries, with the dashboard's
variables given sample values, are checked as recording rules by
`promtool check rules`.

    check_dashboard.py [--promtool promtool] compose/grafana/dashboards/tracking.json
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

# Sample values of the variables the queries use, so that they parse.
SAMPLE_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                    "$job": "tracking", "$instance": ".+"}


def promql_problems(exprs: list, promtool: str) -> list:
    """`promtool check rules` on the expressions as recording rules."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, (title, expr) in enumerate(exprs):
            for var, value in SAMPLE_VARIABLES.items():
                expr = expr.replace(var, value)
            f.write(f"      # {json.dumps(title)}\n      - record: q{i}\n        expr: {json.dumps(expr)}\n")
        path = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    finally:
        pathlib.Path(path).unlink()
    if r.returncode == 0:
        return []
    out = []
    for line in (r.stdout + r.stderr).splitlines():
        m = re.search(r'"q(\d+)": (.*)', line)
        if m:
            out.append(f"panel query {exprs[int(m.group(1))][0]!r}: {m.group(2)}")
    return out or [f"promtool check rules failed: {(r.stdout + r.stderr).strip()}"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROVISIONED = ROOT / "compose/grafana/provisioning/datasources/prometheus.yml"


def main(path: str, promtool: str = None) -> int:
    problems, exprs = [], []
    d = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    for key in ("uid", "title", "panels", "schemaVersion"):
        if not d.get(key):
            problems.append(f"missing {key}")

    m = re.search(r"^\s*uid:\s*(\S+)", PROVISIONED.read_text(encoding="utf-8"), re.M)
    provisioned_uid = m.group(1) if m else None
    ds_vars = [v for v in d.get("templating", {}).get("list", []) if v.get("type") == "datasource"]
    if len(ds_vars) != 1:
        problems.append("expected one datasource variable")
    elif ds_vars[0].get("current", {}).get("value") != provisioned_uid:
        problems.append(f"datasource variable defaults to {ds_vars[0].get('current')}, provisioned uid is {provisioned_uid!r}")
    ds_ref = "${%s}" % ds_vars[0]["name"] if ds_vars else None

    ids, cells, queries = set(), {}, 0
    for p in d.get("panels", []):
        pid, title = p.get("id"), p.get("title")
        if pid in ids:
            problems.append(f"duplicate panel id {pid}")
        ids.add(pid)
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
            problems.append(f"panel {title!r}: bad gridPos {g}")
            continue
        for yy in range(g["y"], g["y"] + g["h"]):
            for xx in range(g["x"], g["x"] + g["w"]):
                if (xx, yy) in cells:
                    problems.append(f"panel {title!r} overlaps {cells[(xx, yy)]!r}")
                    break
                cells[(xx, yy)] = title
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            problems.append(f"panel {title!r} has no query")
        for t in p.get("targets", []):
            queries += 1
            if not t.get("expr"):
                problems.append(f"panel {title!r}: target {t.get('refId')} has no expr")
            else:
                exprs.append((f"{title} {t.get('refId')}", t["expr"]))
            if (t.get("datasource") or p.get("datasource") or {}).get("uid") != ds_ref:
                problems.append(f"panel {title!r}: datasource is not {ds_ref}")

    if promtool:
        problems += promql_problems(exprs, promtool)
    for pr in problems:
        print(f"  FAIL: {pr}")
    if not problems:
        print(f"{path}: {len(ids)} panels, {queries} queries"
              + (" (all parse as PromQL)" if promtool else "")
              + f", datasource {ds_ref} (default {provisioned_uid!r}), layout ok")
    return 1 if problems else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    tool = None
    if args[:1] == ["--promtool"] and len(args) == 3:
        tool, args = args[1], args[2:]
    if len(args) != 1:
        sys.exit(__doc__)
    sys.exit(main(args[0], tool))
