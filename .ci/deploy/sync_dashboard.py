#!/usr/bin/env python3
"""Keeps k8s/base/dashboards/tracking.json, the copy of the Grafana dashboard that
k8s/base/kustomization.yaml ships as a ConfigMap, identical to
compose/grafana/dashboards/tracking.json (the source, edited there).

    python3 .ci/deploy/sync_dashboard.py           # copy the source over the copy
    python3 .ci/deploy/sync_dashboard.py --check   # exit 1 (with a diff) if they differ

A copy because kustomize's configMapGenerator reads files only in or below
the kustomization's directory (a symlink out of it is refused too).
Standard library only.
"""
import difflib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / "compose/grafana/dashboards/tracking.json"
TARGET = ROOT / "k8s/base/dashboards/tracking.json"


def main() -> int:
    want = SOURCE.read_text(encoding="utf-8")
    src, dst = SOURCE.relative_to(ROOT), TARGET.relative_to(ROOT)
    if "--check" in sys.argv[1:]:
        have = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if have != want:
            diff = list(difflib.unified_diff(have.splitlines(True), want.splitlines(True), str(dst), str(src)))
            sys.stdout.writelines(diff[:60])
            if len(diff) > 60:
                print(f"... ({len(diff) - 60} more diff lines)")
            print(f"\nDRIFT: {dst} differs from {src}; run: python3 .ci/deploy/sync_dashboard.py")
            return 1
        print(f"in sync: {dst} == {src}")
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(want, encoding="utf-8")
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
