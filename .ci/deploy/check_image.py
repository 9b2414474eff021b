#!/usr/bin/env python3
"""Offline checks of the image recipe and of every command line that runs it.

    check_image.py --bin target/debug/tracking [RENDERED.yaml ...]

The Dockerfile's runtime stage: distroless (no shell, no package manager),
no RUN (nothing there could run it), no curl or wget, a numeric non-root
USER (Kubernetes' runAsNonRoot checks it without /etc/passwd), ENTRYPOINT
the binary, HEALTHCHECK `tracking probe` in exec form. Then every command
line that runs the image, in the Dockerfile (CMD, HEALTHCHECK), the compose
file (command, healthcheck) and the rendered Kubernetes overlays (args,
command, exec probes and hooks): an exec form (no shell in the image), of
the binary, whose subcommands and flags the binary's `--help` lists.
Needs PyYAML (the CI venv's python).
"""
import json
import pathlib
import re
import shlex
import subprocess
import sys

import yaml
from findings import err, errors, ok

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENTRY = "/usr/local/bin/tracking"
IMAGE = "alpes-tracking"


def instructions(text):
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, line
    continuations joined."""
    out, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def exec_form(arg, what):
    """The JSON argv of an exec-form instruction; None (and a failure) for
    the shell form, which needs a shell the image lacks."""
    try:
        argv = json.loads(arg)
    except ValueError:
        argv = None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        err(f"Dockerfile {what}: not in exec form (JSON array): {arg}")
        return None
    return argv


def check_dockerfile(invocations):
    ins = instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    froms = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    if not froms:
        err("Dockerfile: no FROM")
        return
    runtime = ins[froms[-1]:]
    base = runtime[0][1].split()[0]
    if not base.startswith("gcr.io/distroless/"):
        err(f"Dockerfile: the runtime stage is {base}, not a distroless image")
    for w, arg in runtime:
        if w == "RUN":
            err(f"Dockerfile: RUN in the runtime stage (distroless has no shell): {arg[:60]}")
        if re.search(r"\b(curl|wget)\b", arg) and w not in ("LABEL",):
            err(f"Dockerfile: {w} in the runtime stage uses curl/wget: {arg[:60]}")
    users = [arg for w, arg in runtime if w == "USER"]
    if not users:
        err("Dockerfile: no USER in the runtime stage (it would run as root)")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            err(f"Dockerfile: USER {users[-1]} is not a numeric non-root uid")
    entry = [exec_form(arg, "ENTRYPOINT") for w, arg in runtime if w == "ENTRYPOINT"]
    if not entry or entry[-1] != [ENTRY]:
        err(f"Dockerfile: ENTRYPOINT is not [\"{ENTRY}\"]")
    if not any(w == "COPY" and arg.split()[-1] == ENTRY for w, arg in runtime):
        err(f"Dockerfile: the runtime stage does not COPY the binary to {ENTRY}")
    for w, arg in runtime:
        if w == "CMD":
            argv = exec_form(arg, "CMD")
            if argv is not None:
                invocations.append(("Dockerfile CMD", argv))
        if w == "HEALTHCHECK":
            cmd = re.split(r"\bCMD\b", arg, maxsplit=1)
            argv = exec_form(cmd[1].strip(), "HEALTHCHECK") if len(cmd) == 2 else None
            if argv is None:
                err("Dockerfile: HEALTHCHECK has no CMD")
            elif argv[:2] != [ENTRY, "probe"]:
                err(f"Dockerfile: HEALTHCHECK is not `{ENTRY} probe ...`: {argv}")
            else:
                invocations.append(("Dockerfile HEALTHCHECK", argv[1:]))
    if not any(w == "HEALTHCHECK" for w, _ in runtime):
        err("Dockerfile: no HEALTHCHECK")
    ok(f"Dockerfile: runtime stage {base}, USER {users[-1] if users else '?'}, "
       f"ENTRYPOINT {ENTRY}, HEALTHCHECK `tracking probe`")


def binary_argv(argv, where, invocations):
    """An exec argv inside the image: only the binary can run there."""
    if not argv:
        return
    if argv[0] in (ENTRY, "tracking"):
        invocations.append((where, argv[1:]))
    else:
        err(f"{where}: runs {argv[0]!r}, which the image does not have (only {ENTRY}; no shell)")


def check_compose(invocations):
    path = ROOT / "compose/docker-compose.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    n = 0
    for name, svc in (doc.get("services") or {}).items():
        if not str(svc.get("image", "")).split(":")[0].endswith(IMAGE):
            continue
        n += 1
        where = f"compose service {name}"
        if "entrypoint" in svc:
            err(f"{where}: overrides the entrypoint")
        cmd = svc.get("command")
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        if cmd is not None:
            invocations.append((f"{where} command", cmd))
        test = (svc.get("healthcheck") or {}).get("test")
        if test:
            if isinstance(test, str) or test[0] != "CMD":
                err(f"{where}: healthcheck is not [\"CMD\", ...] (no shell in the image): {test}")
            else:
                binary_argv(test[1:], f"{where} healthcheck", invocations)
    ok(f"compose: {n} services of the image checked")


def check_rendered(paths, invocations):
    for path in paths:
        docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text(encoding="utf-8")) if d]
        for d in docs:
            spec = ((d.get("spec") or {}).get("template") or {}).get("spec")
            if not spec:
                continue
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                if IMAGE not in c.get("image", ""):
                    continue
                where = f"{pathlib.Path(path).name} {d['kind']}/{d['metadata']['name']} container {c['name']}"
                if "command" in c:
                    binary_argv(c["command"] + c.get("args", []), where, invocations)
                else:
                    invocations.append((where, c.get("args", [])))
                hooks = [(f"{p}", c.get(p)) for p in ("startupProbe", "livenessProbe", "readinessProbe")]
                hooks += [(f"lifecycle.{h}", (c.get("lifecycle") or {}).get(h)) for h in ("preStop", "postStart")]
                for what, h in hooks:
                    if h and "exec" in h:
                        binary_argv(h["exec"].get("command", []), f"{where} {what}", invocations)
        ok(f"{pathlib.Path(path).name}: container commands collected")


def help_of(binary, path, cache={}):
    """(subcommands, flags {name: takes_value}) of `binary PATH --help`."""
    key = tuple(path)
    if key not in cache:
        out = subprocess.run([binary, *path, "--help"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        if out.returncode != 0:
            cache[key] = None
        else:
            text = out.stdout
            subs = set()
            if "Commands:" in text:
                block = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
                subs = {l.split()[0] for l in block.splitlines() if l.strip()}
            flags = {}
            for m in re.finditer(r"(?:^|\s|,)(--[a-z0-9][a-z0-9-]*)( <[^>]+>)?", text):
                flags[m.group(1)] = bool(m.group(2))
            cache[key] = (subs, flags)
    return cache[key]


def check_invocations(binary, invocations):
    for where, argv in invocations:
        path, i = [], 0
        info = help_of(binary, path)
        while i < len(argv):
            a = argv[i]
            if a.startswith("--"):
                name = a.split("=", 1)[0]
                if name not in info[1]:
                    err(f"{where}: `tracking {' '.join(path)}` has no flag {name} ({' '.join(argv)})")
                    break
                i += 2 if info[1][name] and "=" not in a else 1
                continue
            if a.startswith("-"):
                i += 1
                continue
            if a not in info[0]:
                err(f"{where}: `tracking {' '.join(path)}` has no subcommand {a!r} ({' '.join(argv)})")
                break
            path.append(a)
            info = help_of(binary, path)
            if info is None:
                err(f"{where}: `tracking {' '.join(path)} --help` failed")
                break
            i += 1
        else:
            ok(f"{where}: tracking {' '.join(argv)}")


def main():
    args = sys.argv[1:]
    if "--bin" not in args:
        sys.exit("usage: check_image.py --bin TRACKING [RENDERED.yaml ...]")
    i = args.index("--bin")
    binary = args[i + 1]
    rendered = args[:i] + args[i + 2:]
    invocations = []
    check_dockerfile(invocations)
    check_compose(invocations)
    check_rendered(rendered, invocations)
    check_invocations(binary, invocations)
    if errors:
        print(f"{len(errors)} problem(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
