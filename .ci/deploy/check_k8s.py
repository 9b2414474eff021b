#!/usr/bin/env python3
"""Offline checks of k8s/ that a schema validator cannot do.

    check_k8s.py --list-builtin   print the manifests made only of built-in kinds
                                  (what kubernetes-validate checks)
    check_k8s.py                  check the custom resources and cross-references

Custom resources (no schema offline): required fields of ServiceMonitor,
PrometheusRule, ScaledObject, TriggerAuthentication. Cross-references: the
ServiceMonitor's selector and named port against the Service; the Service,
PDB, HPA and ScaledObject against the Deployment; the PrometheusRule's groups
against compose/prometheus/alerts.yml (same data); the kustomization's
resources exist; every Secret key a TriggerAuthentication or a secretKeyRef
reads is in the example Secret. Needs PyYAML (in the CI venv, with kubernetes-validate).
"""
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
CR_GROUPS = {"monitoring.coreos.com", "keda.sh"}
SKIP_GROUPS = {"kustomize.config.k8s.io"}

errors = []


def err(msg):
    errors.append(msg)
    print(f"  FAIL: {msg}")


def ok(msg):
    print(f"  ok: {msg}")


def group(doc):
    api = doc.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


def load_all():
    """{path: [docs]} of every manifest under k8s/."""
    out = {}
    for p in sorted(K8S.rglob("*.y*ml")):
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


def main():
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

    by_kind = {}
    for p, docs in manifests.items():
        for d in docs:
            by_kind.setdefault(d.get("kind"), []).append((p.relative_to(ROOT), d))

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

    # kustomization: every resource exists; optional and example files stay out
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    resources = kust.get("resources", [])
    for r in resources:
        if not (K8S / r).exists():
            err(f"kustomization.yaml: resource {r} does not exist")
    for r in resources:
        if r.startswith("optional/") or "example" in r:
            err(f"kustomization.yaml: {r} must not be part of the default deployment")
    ok(f"kustomization.yaml: {len(resources)} resources exist")

    if errors:
        print(f"{len(errors)} problem(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
