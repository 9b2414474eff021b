#!/usr/bin/env python3
"""Checks that every metric used by the Grafana dashboards and the alert rules
is exported by the worker.

    metric_names.py --metrics scraped.prom --source src/internal_events [--allow up] FILE...

FILE is a Grafana dashboard (*.json: every "expr" of a panel target and the
templating queries) or a Prometheus rules file (*.yml/*.yaml: every `expr:`).
A name is accepted when the scrape has a series of that name or a `# TYPE`
line for it, or when the source declares it (`exported.py`: the series that
only Pulsar mode or the ScyllaDB store record are absent from an
embedded-mode scrape); `X_bucket`, `X_count`, `X_sum` are accepted when X is
a histogram (`_count`/`_sum` for a summary too); a histogram's bare name is
refused (it is not a series). Names given with --allow (default: `up`, which
Prometheus itself adds to every target) are accepted as they are.

With --source, the scrape must agree with the source: every `tracking_*` and
`process_*` metric typed in the scrape is declared there, with the same
type (so a stale extractor fails here instead of passing silently). And a
`le="X"` matcher on a histogram in the scrape must name one of its buckets
exactly (`le="1.0"` matches no series when the bucket is written `1`).

Standard library only: the rules files are read with a small line-based
reader of `expr:` keys (inline, quoted, or `|`/`>` block scalars), which is
all the PromQL a rules file holds.
"""
import argparse
import json
import pathlib
import re
import sys

from exported import source_metrics

KEYWORDS = {
    # binary operators and modifiers
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "bool", "atan2",
    # aggregation operators (they may be followed by a clause, not a paren)
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    # literals
    "inf", "nan",
}
GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$__\w+|\$\w+|\[\[\w+\]\]")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names(expr: str) -> set:
    """Metric names in a PromQL expression (functions, keywords, label names,
    numbers, durations and strings left out)."""
    e = GRAFANA_VAR.sub("1m", expr)
    e = STRING.sub('""', e)
    e = re.sub(r"\{[^{}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\[\]]*\]", " ", e)  # ranges and subqueries
    e = CLAUSE.sub(" ", e)  # grouping / matching label lists
    names = set()
    for m in IDENT.finditer(e):
        word = m.group(1)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):  # a function call, or an aggregation
            continue
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def grafana_query_names(q: str) -> set:
    """Templating queries: label_values(selector, label) -> the selector's
    metric; label_values(label) and metrics(...) -> none; query_result(e) -> e."""
    q = q.strip()
    m = re.fullmatch(r"label_values\((.*)\)", q, re.S)
    if m:
        inner = m.group(1)
        depth, cut = 0, None
        for i, c in enumerate(inner):  # the last top-level comma splits off the label
            if c in "({[":
                depth += 1
            elif c in ")}]":
                depth -= 1
            elif c == "," and depth == 0:
                cut = i
        return metric_names(inner[:cut]) if cut is not None else set()
    if q.startswith("metrics(") or q.startswith("label_names("):
        return set()
    m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
    return metric_names(m.group(1) if m else q)


def from_dashboard(path: pathlib.Path) -> dict:
    """{name: [where, ...]} for one dashboard."""
    found = {}
    doc = json.loads(path.read_text(encoding="utf-8"))

    def add(names, where):
        for n in names:
            found.setdefault(n, []).append(where)

    def walk(node, where):
        if isinstance(node, dict):
            title = node.get("title") or where
            if isinstance(node.get("expr"), str):
                add(metric_names(node["expr"]), f"panel {title!r}")
            for k, v in node.items():
                if k != "templating":
                    walk(v, title if isinstance(title, str) else where)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    walk(doc, path.name)
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        add(grafana_query_names(q), f"variable ${var.get('name')}")
    return found


def yaml_exprs(path: pathlib.Path):
    """Yields (line number, expr) for every `expr:` key of a YAML file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    key = re.compile(r"^(\s*)(?:-\s+)?expr:\s*(.*?)\s*$")
    i = 0
    while i < len(lines):
        m = key.match(lines[i])
        if not m:
            i += 1
            continue
        indent, value, start = len(m.group(1)), m.group(2), i + 1
        if value and value[0] in "|>":  # block scalar: the more-indented lines below
            block = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            yield start, " ".join(block)
            continue
        if value[:1] == '"':
            value = json.loads(value)
        elif value[:1] == "'":
            value = value[1:-1].replace("''", "'")
        else:
            value = re.sub(r"\s+#.*$", "", value)
        yield start, value
        i += 1


def from_rules(path: pathlib.Path) -> dict:
    found = {}
    for line, expr in yaml_exprs(path):
        for n in metric_names(expr):
            found.setdefault(n, []).append(f"{path.name}:{line}")
    return found


def scraped(path: pathlib.Path, buckets: dict = None):
    """(series names, {name: type}) of a Prometheus text exposition; fills
    `buckets` with {histogram: {le values as written}}."""
    series, types = set(), {}
    buckets = {} if buckets is None else buckets
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            name = re.split(r"[{\s]", line, maxsplit=1)[0]
            series.add(name)
            le = re.search(r'[{,]le="([^"]*)"', line)
            if name.endswith("_bucket") and le:
                buckets.setdefault(name[: -len("_bucket")], set()).add(le.group(1))
    return series, types


BUCKET_LE = re.compile(r'\b([A-Za-z_:][A-Za-z0-9_:]*)_bucket\s*\{([^{}]*)\}')


def le_values(text: str):
    """(histogram, le) for every `X_bucket{..., le="v", ...}` selector."""
    for m in BUCKET_LE.finditer(text):
        for le in re.findall(r'\ble\s*=\s*"([^"]*)"', m.group(2)):
            yield m.group(1), le


def exprs_of(path: pathlib.Path):
    """Every PromQL expression of a dashboard or a rules file."""
    if path.suffix == ".json":
        out = []

        def walk(node):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "expr" and isinstance(v, str):
                        out.append(v)
                    else:
                        walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(json.loads(path.read_text(encoding="utf-8")))
        return out
    return [e for _, e in yaml_exprs(path)]


def problem(name, series, types, allow):
    if name in allow or name in series:
        return None
    if name in types:
        if types[name] in ("histogram", "summary"):
            return f"{name} is a {types[name]}: use {name}_bucket/_sum/_count"
        return None  # typed, no series yet (no label value seen)
    for suffix in ("_bucket", "_count", "_sum"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and types.get(base) == "histogram":
            return None
        if base and suffix != "_bucket" and types.get(base) == "summary":
            return None
    return f"{name} is not exported by the worker"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", required=True, type=pathlib.Path, help="a scrape of /metrics")
    ap.add_argument("--source", type=pathlib.Path, help="the instrumentation module (src/internal_events)")
    ap.add_argument("--allow", action="append", default=None, help="names accepted as they are (default: up)")
    ap.add_argument("files", nargs="+", type=pathlib.Path)
    args = ap.parse_args()
    allow = set(args.allow if args.allow is not None else ["up"])
    buckets = {}
    series, types = scraped(args.metrics, buckets)
    if not series:
        print(f"FAIL: {args.metrics} holds no series", file=sys.stderr)
        return 1

    failures = 0
    scraped_types = dict(types)
    if args.source:
        problems = []
        declared = source_metrics(args.source, problems)
        for name, kind in sorted(types.items()):
            if not name.startswith(("tracking_", "process_")):
                continue
            if name not in declared:
                problems.append(f"{name} is in the scrape but not declared in {args.source} (extractor out of date?)")
            elif declared[name] != kind:
                problems.append(f"{name} is a {kind} in the scrape, a {declared[name]} in {args.source}")
        for p in problems:
            print(f"  FAIL: source: {p}")
        failures += len(problems)
        absent = sorted(n for n in declared if n not in types)
        print(f"{args.source}: {len(declared)} metrics declared, {len(declared) - len(absent)} in this scrape"
              + (f"; not in it (recorded only in Pulsar mode, by the ScyllaDB store, or on an event): {', '.join(absent)}" if absent else ""))
        for name, kind in declared.items():
            types.setdefault(name, kind)

    for f in args.files:
        used = from_dashboard(f) if f.suffix == ".json" else from_rules(f)
        if not used:
            print(f"FAIL: {f}: no metric name found (parser out of date?)")
            failures += 1
            continue
        bad = {n: problem(n, series, types, allow) for n in used}
        bad = {n: p for n, p in bad.items() if p}
        print(f"{f}: {len(used)} metric names, {len(used) - len(bad)} exported"
              + (f", {len(bad)} NOT" if bad else ""))
        for n in sorted(used):
            base = re.sub(r"_(bucket|count|sum)$", "", n)
            where = "" if n in bad or n in series or base in scraped_types or n in allow else "  (declared in the source; not in this scrape)"
            print(f"    {'MISSING ' if n in bad else 'ok      '}{n}{where}")
        for n, p in sorted(bad.items()):
            print(f"  FAIL: {p} (used in {', '.join(sorted(set(used[n])))})")
        failures += len(bad)
        for hist, le in sorted(set(le_values(" ".join(exprs_of(f))))):
            if hist in buckets and le not in buckets[hist]:
                print(f"  FAIL: {hist}_bucket{{le={le!r}}} matches no bucket; the scrape has le in {sorted(buckets[hist], key=lambda v: float(v))}")
                failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
