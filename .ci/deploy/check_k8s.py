#!/usr/bin/env python3
"""Offline checks of k8s/ that a schema validator cannot do.

    check_k8s.py --list-builtin   print the base's manifests made only of built-in
                                  kinds (what kubernetes-validate checks)
    check_k8s.py                  check the sources: custom resources and
                                  cross-references of k8s/base, k8s/optional and
                                  the example Secret; the kustomizations
    check_k8s.py --rendered FILE [--immutable-image] [--builtin-out OUT]
                                  check an overlay as `kubectl kustomize` rendered it;
                                  OUT gets its built-in kinds (for kubernetes-validate)

Custom resources (no schema offline): required fields of ServiceMonitor,
PrometheusRule, ScaledObject, TriggerAuthentication. Cross-references: the
ServiceMonitor's selector and named port against the Service; the Service,
PDB, HPA and ScaledObject against the Deployment; the PrometheusRule's groups
against compose/prometheus/alerts.yml (same data); the kustomization's
resources exist; every Secret key a TriggerAuthentication or a secretKeyRef
reads is in the example Secret. A rendered overlay: the same cross-references;
every ConfigMap a pod reads is in the rendering, and the settings one carries
its content hash (tracking-config-<hash>: a change rolls the pods); the
dashboard ConfigMap holds compose's dashboard and the sidecar's label; with
--immutable-image, every image is pinned to a version tag or a digest.
Needs PyYAML (in the CI venv, with kubernetes-validate).
"""
import json
import pathlib
import re
import sys

import yaml
from findings import err, errors, ok

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BASE = K8S / "base"
OVERLAYS = K8S / "overlays"
NAMESPACE = "alpes-tracking"
IMAGE = "alpes-tracking"
CR_GROUPS = {"monitoring.coreos.com", "keda.sh"}
SKIP_GROUPS = {"kustomize.config.k8s.io"}


def group(doc):
    api = doc.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


def load_all():
    """{path: [docs]} of every manifest of the sources: the base, the
    optional manifests and the example Secret (the overlays hold patches,
    checked once rendered)."""
    out = {}
    for p in sorted(K8S.rglob("*.y*ml")):
        if OVERLAYS in p.parents:
            continue
        docs = [d for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d]
        out[p] = docs
    return out


def get(doc, path, default=None):
    cur = doc
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return default
        cur = cur[key]
    return cur


def is_subset(small, big):
    return bool(small) and all(big.get(k) == v for k, v in small.items())


def by_kind_of(manifests):
    """{kind: [(path, doc)]} of {path: [docs]}."""
    out = {}
    for p, docs in manifests.items():
        for d in docs:
            out.setdefault(d.get("kind"), []).append((p.relative_to(ROOT) if p.is_absolute() else p, d))
    return out


def cross_references(by_kind, secret_docs=()):
    """The checks between objects (see the module's doc). `secret_docs`:
    (path, Secret) pairs that document keys without being deployed."""
    for path, sec in secret_docs:
        by_kind.setdefault("Secret", []).append((path, sec))

    def one(kind):
        items = by_kind.get(kind, [])
        if len(items) != 1:
            err(f"expected exactly one {kind}, found {len(items)}")
            return None, {}
        return items[0]

    _, deploy = one("Deployment")
    _, svc = one("Service")
    deploy_name = get(deploy, "metadata.name")
    pod_labels = get(deploy, "spec.template.metadata.labels", {})
    if not is_subset(get(deploy, "spec.selector.matchLabels", {}), pod_labels):
        err("Deployment: spec.selector.matchLabels do not select its own pod template")
    container_ports = {
        port.get("name")
        for c in get(deploy, "spec.template.spec.containers", [])
        for port in c.get("ports", [])
    }
    svc_ports = {port.get("name"): port for port in get(svc, "spec.ports", [])}
    if not is_subset(get(svc, "spec.selector", {}), pod_labels):
        err("Service: spec.selector does not select the Deployment's pods")
    for name, port in svc_ports.items():
        if isinstance(port.get("targetPort"), str) and port["targetPort"] not in container_ports:
            err(f"Service port {name}: targetPort {port['targetPort']!r} is not a container port name")
    ok(f"Deployment {deploy_name!r} and Service {get(svc, 'metadata.name')!r} (ports {sorted(svc_ports)}) agree")

    for path, pdb in by_kind.get("PodDisruptionBudget", []):
        if not is_subset(get(pdb, "spec.selector.matchLabels", {}), pod_labels):
            err(f"{path}: PodDisruptionBudget selector does not select the Deployment's pods")
        else:
            ok(f"{path}: PodDisruptionBudget selects the Deployment's pods")

    hpa_bounds = None
    for path, hpa in by_kind.get("HorizontalPodAutoscaler", []):
        if get(hpa, "spec.scaleTargetRef.name") != deploy_name:
            err(f"{path}: HPA scaleTargetRef.name is not {deploy_name!r}")
        hpa_bounds = (get(hpa, "spec.minReplicas"), get(hpa, "spec.maxReplicas"))
        ok(f"{path}: HPA targets Deployment {deploy_name!r}, replicas {hpa_bounds}")
    if "replicas" in get(deploy, "spec", {}):
        err("Deployment sets spec.replicas: the HPA/KEDA owns it (it would be reset on every apply)")

    # ServiceMonitor
    for path, sm in by_kind.get("ServiceMonitor", []):
        sel = get(sm, "spec.selector")
        if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
            err(f"{path}: ServiceMonitor spec.selector is missing or empty")
        elif sel.get("matchLabels") and not is_subset(sel["matchLabels"], get(svc, "metadata.labels", {})):
            err(f"{path}: ServiceMonitor selector does not match the Service's labels")
        endpoints = get(sm, "spec.endpoints")
        if not isinstance(endpoints, list) or not endpoints:
            err(f"{path}: ServiceMonitor spec.endpoints is missing or empty")
            continue
        for ep in endpoints:
            if ep.get("port") not in svc_ports:
                err(f"{path}: endpoint port {ep.get('port')!r} is not a named port of the Service {sorted(svc_ports)}")
        ok(f"{path}: ServiceMonitor selects the Service, endpoints on ports {[e.get('port') for e in endpoints]}")

    # PrometheusRule
    plain = yaml.safe_load((ROOT / "compose/prometheus/alerts.yml").read_text(encoding="utf-8"))
    for path, pr in by_kind.get("PrometheusRule", []):
        groups = get(pr, "spec.groups")
        if not isinstance(groups, list) or not groups:
            err(f"{path}: PrometheusRule spec.groups is missing or empty")
            continue
        n = 0
        for g in groups:
            rules = g.get("rules")
            if not g.get("name") or not isinstance(rules, list) or not rules:
                err(f"{path}: group {g.get('name')!r} needs a name and a non-empty rules list")
                continue
            for r in rules:
                n += 1
                if not (r.get("alert") or r.get("record")) or not r.get("expr"):
                    err(f"{path}: rule {r.get('alert') or r.get('record')!r} needs alert/record and expr")
                if r.get("alert"):
                    missing = {"summary", "description", "runbook"} - set(r.get("annotations", {}))
                    if missing:
                        err(f"{path}: alert {r['alert']} lacks annotations {sorted(missing)}")
        if groups != plain.get("groups"):
            err(f"{path}: spec.groups differ from compose/prometheus/alerts.yml")
        ok(f"{path}: PrometheusRule with {len(groups)} group(s), {n} rules, same data as alerts.yml")

    # ScaledObject (+ its TriggerAuthentication)
    auths = {get(d, "metadata.name") for _, d in by_kind.get("TriggerAuthentication", [])}
    for path, so in by_kind.get("ScaledObject", []):
        target = get(so, "spec.scaleTargetRef.name")
        if target != deploy_name:
            err(f"{path}: ScaledObject scaleTargetRef.name {target!r} is not the Deployment {deploy_name!r}")
        triggers = get(so, "spec.triggers")
        if not isinstance(triggers, list) or not triggers:
            err(f"{path}: ScaledObject spec.triggers is missing or empty")
            triggers = []
        for t in triggers:
            if not t.get("type") or not isinstance(t.get("metadata"), dict):
                err(f"{path}: every trigger needs a type and metadata")
            ref = get(t, "authenticationRef.name")
            if ref and ref not in auths:
                err(f"{path}: trigger authenticationRef {ref!r} has no TriggerAuthentication")
        bounds = (get(so, "spec.minReplicaCount"), get(so, "spec.maxReplicaCount"))
        if hpa_bounds and bounds != hpa_bounds:
            err(f"{path}: replica bounds {bounds} differ from the HPA's {hpa_bounds}")
        ok(f"{path}: ScaledObject targets {target!r} with {[t.get('type') for t in triggers]} triggers, replicas {bounds}")
    for path, ta in by_kind.get("TriggerAuthentication", []):
        if not (get(ta, "spec.secretTargetRef") or get(ta, "spec.env") or get(ta, "spec.podIdentity")):
            err(f"{path}: TriggerAuthentication has no secretTargetRef/env/podIdentity")

    # Secret keys: every key a TriggerAuthentication or a secretKeyRef reads
    # is one the example Secret documents (the pods read it with envFrom,
    # so its keys are the variable names the binary reads).
    secrets = {}
    for _, sec in by_kind.get("Secret", []):
        keys = set((sec.get("stringData") or {}).keys()) | set((sec.get("data") or {}).keys())
        secrets[get(sec, "metadata.name")] = keys
    refs = []
    for path, ta in by_kind.get("TriggerAuthentication", []):
        for r in get(ta, "spec.secretTargetRef", []) or []:
            refs.append((path, r.get("name"), r.get("key")))

    def secret_key_refs(node):
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                yield ref.get("name"), ref.get("key")
            for v in node.values():
                yield from secret_key_refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from secret_key_refs(v)

    for kind, docs in by_kind.items():
        for path, doc in docs:
            for name, key in secret_key_refs(doc):
                refs.append((path, name, key))
    for path, name, key in refs:
        if name not in secrets:
            err(f"{path}: reads Secret {name!r}, which no manifest (secret.example.yaml) describes")
        elif key not in secrets[name]:
            err(f"{path}: reads key {key!r} of Secret {name!r}, which holds {sorted(secrets[name])}")
    ok(f"Secret keys: {len(refs)} reference(s) match the example Secret")



def check_kustomizations():
    """The base lists resources that exist and leaves the optional and
    example files out; every overlay builds on the base."""
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    resources = kust.get("resources", [])
    for r in resources:
        if not (BASE / r).exists():
            err(f"k8s/base/kustomization.yaml: resource {r} does not exist")
        if "optional" in r or "example" in r:
            err(f"k8s/base/kustomization.yaml: {r} must not be part of the default deployment")
    ok(f"k8s/base/kustomization.yaml: {len(resources)} resources exist")
    overlays = sorted(p.parent for p in OVERLAYS.glob("*/kustomization.yaml"))
    if not overlays:
        err("no overlay under k8s/overlays/")
    for o in overlays:
        k = yaml.safe_load((o / "kustomization.yaml").read_text(encoding="utf-8"))
        bases = [r for r in k.get("resources", []) if (o / r).resolve() == BASE]
        if not bases:
            err(f"{o.relative_to(ROOT)}: does not build on k8s/base (resources: ../../base)")
    ok(f"overlays {[o.name for o in overlays]} build on k8s/base")


# A tag names an immutable release when it is a version (v1.2.3, 1.2.3-rc.1,
# 1.2.3+build.5); a digest always does. Anything else (latest, dev, main,
# a branch) moves.
VERSION_TAG = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
HASHED = re.compile(r"^tracking-config-[a-z0-9]{10}$")


def pod_specs(by_kind):
    """(kind/name, pod spec) of every workload in the rendering."""
    for kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        for _, d in by_kind.get(kind, []):
            yield f"{kind}/{get(d, 'metadata.name')}", get(d, "spec.template.spec", {})


def configmap_refs(spec):
    """Names of the ConfigMaps a pod spec reads (envFrom, env, volumes)."""
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for e in c.get("envFrom", []) or []:
            if "configMapRef" in e:
                yield e["configMapRef"].get("name")
        for e in c.get("env", []) or []:
            ref = get(e, "valueFrom.configMapKeyRef")
            if ref:
                yield ref.get("name")
    for v in spec.get("volumes", []) or []:
        if "configMap" in v:
            yield v["configMap"].get("name")


def check_rendered(path, immutable, builtin_out):
    """An overlay as `kubectl kustomize` rendered it (see the module's doc)."""
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    name = path.name
    by_kind = by_kind_of({pathlib.Path(name): docs})
    example = K8S / "secret.example.yaml"
    secret_docs = [(example.relative_to(ROOT), d) for d in yaml.safe_load_all(example.read_text(encoding="utf-8")) if d]
    cross_references(by_kind, secret_docs)

    # Namespace: everything namespaced lands in the one namespace.
    for d in docs:
        if d.get("kind") == "Namespace":
            continue
        if get(d, "metadata.namespace") != NAMESPACE:
            err(f"{name}: {d.get('kind')}/{get(d, 'metadata.name')} is not in namespace {NAMESPACE}")

    # ConfigMaps: every reference resolves; the settings' name is hashed.
    maps = {get(d, "metadata.name"): d for _, d in by_kind.get("ConfigMap", [])}
    settings = [m for m in maps if HASHED.match(m or "")]
    if len(settings) != 1:
        err(f"{name}: expected one ConfigMap tracking-config-<hash>, found {sorted(maps)}")
    for workload, spec in pod_specs(by_kind):
        refs = list(configmap_refs(spec))
        for r in refs:
            if r not in maps:
                err(f"{name}: {workload} reads ConfigMap {r!r}, which the rendering lacks (a reference kustomize did not rewrite?)")
        if settings and settings[0] not in refs:
            err(f"{name}: {workload} does not read the hashed settings ConfigMap {settings[0]!r} (reads {refs})")
    if settings:
        keys = set(maps[settings[0]].get("data", {}))
        env = {l.split("=", 1)[0] for l in (BASE / "config.env").read_text(encoding="utf-8").splitlines()
               if l.strip() and not l.lstrip().startswith("#")}
        if env - keys:
            err(f"{name}: {settings[0]} lacks {sorted(env - keys)} of k8s/base/config.env")
        ok(f"{name}: pods read {settings[0]} ({len(keys)} settings, hashed name)")

    # The dashboard for the Grafana sidecar: compose's dashboard, labelled.
    dash = [d for d in maps.values() if get(d, "metadata.labels", {}).get("grafana_dashboard") == "1"]
    source = json.loads((ROOT / "compose/grafana/dashboards/tracking.json").read_text(encoding="utf-8"))
    if len(dash) != 1:
        err(f"{name}: expected one ConfigMap labelled grafana_dashboard: \"1\", found {len(dash)}")
    else:
        data = dash[0].get("data", {})
        try:
            same = [k for k, v in data.items() if json.loads(v) == source]
        except ValueError as e:
            same = []
            err(f"{name}: dashboard ConfigMap holds invalid JSON: {e}")
        if not same:
            err(f"{name}: dashboard ConfigMap {get(dash[0], 'metadata.name')} does not hold compose/grafana/dashboards/tracking.json")
        else:
            ok(f"{name}: dashboard ConfigMap {get(dash[0], 'metadata.name')} ({same[0]}) == compose's dashboard")

    # Images: this project's image everywhere; pinned where asked.
    images = set()
    for workload, spec in pod_specs(by_kind):
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            image = c.get("image", "")
            images.add(image)
            # registry[:port]/path/name[:tag][@digest]: the name and tag are
            # in the last path segment.
            name_tag = image.split("@")[0].rsplit("/", 1)[-1]
            if name_tag.partition(":")[0] != IMAGE:
                err(f"{name}: {workload} runs {image!r}, not the {IMAGE} image")
            if immutable:
                tag = name_tag.partition(":")[2]
                if not (DIGEST.search(image) or VERSION_TAG.match(tag)):
                    err(f"{name}: {workload} image {image!r} has a mutable tag {tag or '(none)'!r}: "
                        "pin a version (newTag: \"1.2.3\") or a digest (digest: sha256:...) in the overlay")
    if len(images) != 1:
        err(f"{name}: the workloads run different images {sorted(images)}")
    ok(f"{name}: image {sorted(images)}{' (immutable)' if immutable else ''}")

    if builtin_out:
        builtin = [d for d in docs if group(d) not in CR_GROUPS]
        builtin_out.write_text(yaml.safe_dump_all(builtin, sort_keys=False), encoding="utf-8")


def main():
    args = sys.argv[1:]
    if "--rendered" in args:
        path = pathlib.Path(args[args.index("--rendered") + 1])
        out = pathlib.Path(args[args.index("--builtin-out") + 1]) if "--builtin-out" in args else None
        check_rendered(path, "--immutable-image" in args, out)
        return report()

    manifests = load_all()
    if "--list-builtin" in sys.argv[1:]:
        for p, docs in manifests.items():
            groups = {group(d) for d in docs}
            if groups & (CR_GROUPS | SKIP_GROUPS):
                if groups - (CR_GROUPS | SKIP_GROUPS):
                    sys.exit(f"{p}: mixes built-in kinds and custom resources; split it")
                continue
            print(p.relative_to(ROOT))
        return 0

    by_kind = by_kind_of(manifests)
    cross_references(by_kind)
    check_kustomizations()
    return report()


def report():
    if errors:
        print(f"{len(errors)} problem(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
