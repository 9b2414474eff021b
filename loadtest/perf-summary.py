#!/usr/bin/env python3
"""Where the embedded pipeline's CPU goes, per event: reads `perf script`
output of a profile taken with call graphs (pipeline-profile.sh records
one), puts each sample in one part of the pipeline, and turns the shares
into CPU microseconds per persisted event and the rate two cores would
allow if a part cost nothing.

    perf script -i perf.data | loadtest/perf-summary.py --hz 99 --seconds 10 --rate 30000 [--cores 2] [--json F]
    loadtest/perf-summary.py --median F1 F2 F3      (each figure's median over runs)

--rate is the persisted events per second during the recording (the
scenario takes it from the run's timeline). A sample is put in the first
part whose pattern one of its frames (or its thread name) matches, in the
order below, so the embedded store's parts come first: a sample in the
store's write or apply counts there whatever it runs (encoding, checks,
fjall), and any other sample in fjall or lsm-tree counts as the store
whoever called it.
"""
import argparse
import collections
import json
import re
import statistics
import sys

GENERATOR = "load generator (in-process feed)"
# (part, where to look, pattern); order matters, see the docstring.
PARTS = [
    # The store's call runs in a blocking task; where the compiler inlines
    # `Inner::write`/`apply` into it, only the task's closure names it.
    ("store: write (checks, encoding, memtable inserts)", "frame",
     r"embedded::write::.*Inner>::write|embedded::Inner>::write|embedded::\{impl#\d+\}::write::\{async_block#\d+\}::\{closure"),
    ("store: projections' applies (row reads, commits)", "frame",
     r"embedded::project::.*Inner>::apply|embedded::\{impl#\d+\}::apply::\{async_block#\d+\}::\{closure"),
    ("store: flushes and compactions (fjall's threads)", "thread", r"^fjall"),
    ("store: index checkpoints (sort, ingest)", "thread", r"^store-index"),
    ("store: other fjall calls (aggregates' lookups, reads)", "frame", r"fjall::|lsm_tree::"),
    ("command log: writers (encode, write, fdatasync)", "thread", r"^log-writer"),
    (GENERATOR, "frame", r"alpes_tracking::loadgen::"),
    # Any frame of the actor's task (its handler, its processing loop and
    # mailbox, inlined or not): what it runs outside the store is its own.
    ("HTTP ingest (parse, validate, append)", "frame", r"alpes_tracking::http::"),
    ("consumers (decode, route, acknowledge)", "frame", r"actors::consumer::PartitionConsumer"),
    ("aggregates (validate, seq, call the writer)", "frame", r"actors::aggregate::(UserAggregate|process)"),
    ("journal writer actor (outside the store)", "frame", r"actors::writer::JournalWriter"),
    ("projector actors (outside the store)", "frame", r"actors::projector::Projector"),
    ("command log: readers", "frame", r"alpes_tracking::log::embedded"),
]
OTHER = "runtime and the rest (scheduler, mailboxes, kernel)"


def samples(lines):
    """Yields (thread name, [frames]) per sample of `perf script` output."""
    thread, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if thread is not None:
                yield thread, frames
            thread, frames = None, []
        elif line[0] not in " \t":
            thread, frames = line.split()[0], []
        else:
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                frames.append(parts[1].rsplit(" (", 1)[0])
    if thread is not None:
        yield thread, frames


def part_of(thread, frames):
    for name, where, pattern in PARTS:
        if where == "thread":
            if re.search(pattern, thread):
                return name
        elif any(re.search(pattern, f) for f in frames):
            return name
    return OTHER


def summarize(counts, n, hz, seconds, rate, cores):
    """The figures of one recording, as a dict (also written by --json)."""
    busy = n / (hz * seconds)  # cores busy on average
    per_event = lambda k: 1e6 * busy * k / n / rate  # noqa: E731
    store = sum(k for name, k in counts.items() if name.startswith("store"))
    gen = counts.get(GENERATOR, 0)
    ceilings = {}
    for label, k in [("as measured", n - gen), ("if the store cost nothing", n - gen - store),
                     ("if all but the store cost nothing", store)]:
        us = per_event(k)
        ceilings[label] = {"us": us, "rate": 1e6 * cores / us if us > 0 else float("inf")}
    return {
        "samples": n, "busy_cores": busy, "rate": rate, "cores": cores,
        "us_per_event": per_event(n), "us_without_generator": per_event(n - gen),
        "parts": {name: {"share": 100 * counts.get(name, 0) / n, "us": per_event(counts.get(name, 0))}
                  for name, _, _ in PARTS + [(OTHER, None, None)]},
        "ceilings": ceilings,
    }


def show(r, head):
    print(head)
    print(f"  {'share':>6}  {'us/event':>8}  part")
    for name, v in r["parts"].items():
        print(f"  {v['share']:5.1f}%  {v['us']:8.1f}  {name}")
    budget = 1e6 * r["cores"] / 100_000
    print(f"CPU per event without the generator: {r['us_without_generator']:.1f} us "
          f"(100,000/s on {r['cores']:.0f} cores allows {budget:.1f} us)")
    for label, c in r["ceilings"].items():
        print(f"  ceiling {label}: {c['us']:.1f} us/event, {c['rate']:,.0f}/s on {r['cores']:.0f} cores")


def median_of(files):
    """Each figure's median over the runs written with --json."""
    runs = [json.load(open(f)) for f in files]
    med = lambda get: statistics.median(get(r) for r in runs)  # noqa: E731
    first = runs[0]
    return {
        "samples": med(lambda r: r["samples"]), "busy_cores": med(lambda r: r["busy_cores"]),
        "rate": med(lambda r: r["rate"]), "cores": first["cores"],
        "us_per_event": med(lambda r: r["us_per_event"]),
        "us_without_generator": med(lambda r: r["us_without_generator"]),
        "parts": {name: {k: med(lambda r: r["parts"][name][k]) for k in ("share", "us")}
                  for name in first["parts"]},
        "ceilings": {label: {k: med(lambda r: r["ceilings"][label][k]) for k in ("us", "rate")}
                     for label in first["ceilings"]},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hz", type=float, help="perf's sampling frequency")
    ap.add_argument("--seconds", type=float, help="length of the recording")
    ap.add_argument("--rate", type=float, help="persisted events/s during it")
    ap.add_argument("--cores", type=float, default=2.0)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--median", nargs="+", metavar="JSON",
                    help="instead of reading perf script: each figure's median over these --json files")
    a = ap.parse_args()
    if a.median:
        r = median_of(a.median)
        show(r, f"median of {len(a.median)} runs: {r['busy_cores']:.2f} of {r['cores']:.0f} cores busy, "
                f"{r['rate']:,.0f} events/s persisted, {r['us_per_event']:.1f} us of CPU per event")
        return
    if a.hz is None or a.seconds is None or a.rate is None:
        ap.error("--hz, --seconds and --rate are needed to read perf script output")
    counts, n = collections.Counter(), 0
    for thread, frames in samples(sys.stdin):
        counts[part_of(thread, frames)] += 1
        n += 1
    if n == 0 or a.rate <= 0:
        sys.exit("no samples, or no events persisted during the recording")
    r = summarize(counts, n, a.hz, a.seconds, a.rate, a.cores)
    show(r, f"{n} samples over {a.seconds:.0f} s: {r['busy_cores']:.2f} of {a.cores:.0f} cores busy, "
            f"{a.rate:,.0f} events/s persisted, {r['us_per_event']:.1f} us of CPU per event")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
