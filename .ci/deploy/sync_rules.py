#!/usr/bin/env python3
"""Keeps k8s/base/prometheus-rules.yaml (a PrometheusRule) in sync with
compose/prometheus/alerts.yml (a plain Prometheus rules file, the source).

    python3 .ci/deploy/sync_rules.py           # regenerate the PrometheusRule
    python3 .ci/deploy/sync_rules.py --check   # exit 1 (with a diff) if it drifted

The CR is the plain file's `groups:` block, verbatim (comments included),
indented under `spec:`; so a text comparison is an exact drift check.
Standard library only.
"""
import difflib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / "compose/prometheus/alerts.yml"
TARGET = ROOT / "k8s/base/prometheus-rules.yaml"

HEADER = """\
# GENERATED from compose/prometheus/alerts.yml by .ci/deploy/sync_rules.py:
# do not edit here. Edit the plain rules file, then run
#   python3 .ci/deploy/sync_rules.py
# (.ci/check-deploy.sh fails when the two differ).
#
# A PrometheusRule for the Prometheus Operator (kube-prometheus-stack): the
# operator loads every PrometheusRule whose labels match its ruleSelector;
# kube-prometheus-stack's default selects `release: <helm release name>`.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: tracking
  labels:
    app.kubernetes.io/name: alpes-tracking
    app.kubernetes.io/component: worker
    release: prometheus
spec:
"""


def render() -> str:
    lines = SOURCE.read_text(encoding="utf-8").splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.startswith("groups:"))
    except StopIteration:
        sys.exit(f"{SOURCE}: no top-level 'groups:' line")
    body = [("  " + l) if l.strip() else "" for l in lines[start:]]
    return HEADER + "\n".join(body).rstrip("\n") + "\n"


def main() -> int:
    want = render()
    if "--check" in sys.argv[1:]:
        have = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if have != want:
            sys.stdout.writelines(
                difflib.unified_diff(
                    have.splitlines(True), want.splitlines(True),
                    str(TARGET.relative_to(ROOT)), "generated from " + str(SOURCE.relative_to(ROOT)),
                )
            )
            print(f"\nDRIFT: {TARGET.relative_to(ROOT)} differs from {SOURCE.relative_to(ROOT)};"
                  " run: python3 .ci/deploy/sync_rules.py")
            return 1
        print(f"in sync: {TARGET.relative_to(ROOT)} == {SOURCE.relative_to(ROOT)}")
        return 0
    TARGET.write_text(want, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
