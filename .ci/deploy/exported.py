"""The metrics the worker exports, read from its source (standard library only).

    from exported import source_metrics
    source_metrics(pathlib.Path("src/internal_events"))  # {name: kind}

A scrape of an embedded-mode worker lacks the series that only Pulsar mode
or the ScyllaDB store record (publish latency, reconnects, folding, ...):
the exporter writes a `# TYPE` line only for a series that exists, and
`describe_*!` creates none. So the list of names comes from the source:

- `pub const X: &str = "tracking_...";` names a metric;
- `describe_counter!(X, ...)` / `describe_gauge!` / `describe_histogram!`
  gives its kind (every metric is described: one that is not is reported);
- `counter!(X ...)` / `gauge!` / `histogram!` must use a described name of
  the same kind (a string literal there must be described too);
- the `process_*` series are rendered as text (`process.rs`): each
  `one("process_...", "counter"|"gauge", ...)` call is one of them.

`problems` lists what does not hold, so a check can refuse an extractor
that has fallen behind the code instead of trusting a partial list.
"""
import pathlib
import re

CONST = re.compile(r'\bpub(?:\([^)]*\))?\s+const\s+([A-Z][A-Z0-9_]*)\s*:\s*&str\s*=\s*"([a-z_:][a-z0-9_:]*)"\s*;')
DESCRIBE = re.compile(r"\bdescribe_(counter|gauge|histogram)!\s*\(\s*([A-Za-z_][A-Za-z0-9_]*|\"[^\"]+\")")
RECORD = re.compile(r"(?<![\w_])(counter|gauge|histogram)!\s*\(\s*([A-Za-z_][A-Za-z0-9_]*|\"[^\"]+\")")
PROCESS = re.compile(r'\bone\(\s*"(process_[a-z0-9_]+)"\s*,\s*"(counter|gauge)"')


def _resolve(arg: str, consts: dict):
    if arg.startswith('"'):
        return arg.strip('"')
    return consts.get(arg)  # a local variable (a loop over names) resolves to None


def source_metrics(src: pathlib.Path, problems: list = None) -> dict:
    """{metric name: counter|gauge|histogram} declared under `src`."""
    problems = [] if problems is None else problems
    files = sorted(src.rglob("*.rs"))
    if not files:
        problems.append(f"{src}: no .rs file")
        return {}
    texts = {f: f.read_text(encoding="utf-8") for f in files}
    consts = {}
    for text in texts.values():
        for const, name in CONST.findall(text):
            consts[const] = name
    kinds = {}
    for f, text in texts.items():
        for kind, arg in DESCRIBE.findall(text):
            name = _resolve(arg, consts)
            if name is None:
                problems.append(f"{f.name}: describe_{kind}!({arg}) names no constant")
            elif kinds.setdefault(name, kind) != kind:
                problems.append(f"{name} described as {kinds[name]} and {kind}")
        for name, kind in PROCESS.findall(text):
            kinds[name] = kind
    for f, text in texts.items():
        for kind, arg in RECORD.findall(text):
            name = _resolve(arg, consts)
            if name is None:
                continue
            if name not in kinds:
                problems.append(f"{f.name}: {kind}!({arg}) records {name}, which is never described")
            elif kinds[name] != kind:
                problems.append(f"{f.name}: {kind}!({arg}) records {name}, described as a {kinds[name]}")
    for const, name in consts.items():
        if name not in kinds and name.startswith("tracking_"):
            problems.append(f"const {const} = {name!r} is never described")
    return kinds
