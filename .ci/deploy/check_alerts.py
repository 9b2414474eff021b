#!/usr/bin/env python3
"""Checks the alert rules against their runbook and their unit tests
(standard library only):

- every alert has a `runbook_url` annotation, RUNBOOK_BASE followed by
  `#<anchor>`, and the anchor is the alert's own heading in the operations
  guide (GitHub's rule: the heading text lowercased, spaces to '-',
  punctuation other than '-' and '_' dropped);
- every alert has a unit test in which it fires (a non-empty `exp_alerts`)
  and one in which it stays silent (`exp_alerts: []`).

    check_alerts.py compose/prometheus/alerts.yml compose/prometheus/alerts_test.yml docs/operations.md

The repository declares no public URL (no `repository` in Cargo.toml, no
link in the README), so RUNBOOK_BASE is where the guide is published on
GitHub; change it here and in alerts.yml together.
"""
import pathlib
import re
import sys

RUNBOOK_BASE = "https://github.com/alpespartners/tracking/blob/main/docs/operations.md"


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading's text."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: pathlib.Path) -> set:
    """Every heading's anchor, with GitHub's -1, -2 suffixes on repeats
    (headings inside fenced code blocks are not headings)."""
    seen, out, fenced = {}, set(), False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            a = github_anchor(m.group(1))
            n = seen.get(a, 0)
            seen[a] = n + 1
            out.add(a if n == 0 else f"{a}-{n}")
    return out


def alerts(rules: pathlib.Path) -> dict:
    """{alert: {annotation key: value}} (annotations as written on one line)."""
    out, current = {}, None
    for line in rules.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s*-\s+(alert|record):\s*(\S+)\s*$", line)
        if m:
            current = m.group(2) if m.group(1) == "alert" else None
            if current:
                out.setdefault(current, {})
            continue
        m = re.match(r'^\s+(runbook_url|runbook|summary|description):\s*"?(.*?)"?\s*$', line)
        if m and current:
            out[current][m.group(1)] = m.group(2)
    return out


def tested(tests: pathlib.Path) -> dict:
    """{alert: {"fires", "silent"}} from the alert_rule_test entries."""
    out, name = {}, None
    for line in tests.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s*-?\s*alertname:\s*(\S+)\s*$", line)
        if m:
            name = m.group(1)
            continue
        m = re.match(r"^\s*exp_alerts:\s*(\S*)\s*$", line)
        if m and name:
            out.setdefault(name, set()).add("silent" if m.group(1) == "[]" else "fires")
            name = None
    return out


def main(rules: str, tests: str, doc: str) -> int:
    problems = []
    found = alerts(pathlib.Path(rules))
    heads = anchors(pathlib.Path(doc))
    cases = tested(pathlib.Path(tests))
    if not found:
        problems.append(f"{rules}: no alert found (reader out of date?)")
    for name, ann in sorted(found.items()):
        url = ann.get("runbook_url")
        want = f"{RUNBOOK_BASE}#{github_anchor(name)}"
        if not url:
            problems.append(f"{name}: no runbook_url annotation")
        elif url != want:
            problems.append(f"{name}: runbook_url is {url!r}, expected {want!r} (the alert's own section)")
        if github_anchor(name) not in heads:
            problems.append(f"{name}: no heading '### {name}' in {doc}")
        for case in ("fires", "silent"):
            if case not in cases.get(name, set()):
                problems.append(f"{name}: no unit test in {tests} where it {'fires' if case == 'fires' else 'stays silent'}")
    for name in sorted(set(cases) - set(found)):
        problems.append(f"{tests}: tests alert {name}, which {rules} does not define")
    for p in problems:
        print(f"  FAIL: {p}")
    if not problems:
        print(f"{rules}: {len(found)} alerts, each with runbook_url -> its section of {doc},"
              f" and unit tests where it fires and where it stays silent")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
