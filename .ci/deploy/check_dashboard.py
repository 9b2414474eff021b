#!/usr/bin/env python3
"""Structure checks of a Grafana dashboard JSON (standard library only):
uid and title set, panel ids unique, every panel placed on the 24-column grid
without overlapping another, every query on the dashboard's datasource
variable, and that variable defaulting to the datasource uid that
compose/grafana/provisioning provisions ("prometheus").

    check_dashboard.py compose/grafana/dashboards/tracking.json
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROVISIONED = ROOT / "compose/grafana/provisioning/datasources/prometheus.yml"


def main(path: str) -> int:
    problems = []
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
            if (t.get("datasource") or p.get("datasource") or {}).get("uid") != ds_ref:
                problems.append(f"panel {title!r}: datasource is not {ds_ref}")

    for pr in problems:
        print(f"  FAIL: {pr}")
    if not problems:
        print(f"{path}: {len(ids)} panels, {queries} queries, datasource {ds_ref} (default {provisioned_uid!r}), layout ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
