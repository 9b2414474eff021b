#!/usr/bin/env python3
"""Where a JVM's CPU went, from a JFR recording (stack-profile.sh records
Cassandra's): the share of execution samples per thread pool (numbers
stripped from thread names) and the hottest methods by self samples.

    loadtest/jfr-summary.py RECORDING.jfr [TOP]
"""
import collections
import re
import subprocess
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    out = subprocess.run(
        ["jfr", "print", "--events", "jdk.ExecutionSample", "--stack-depth", "1", sys.argv[1]],
        capture_output=True, text=True, check=True,
    ).stdout
    pools, methods, n = collections.Counter(), collections.Counter(), 0
    for sample in out.split("jdk.ExecutionSample")[1:]:
        thread = re.search(r'sampledThread = "([^"]*)"', sample)
        frame = re.search(r"^\s+([\w$.<>]+)\(", sample, re.M)
        if not thread or not frame:
            continue
        n += 1
        pools[re.sub(r"[-:#]?\d+", "", thread.group(1)).strip()] += 1
        methods[frame.group(1)] += 1
    if n == 0:
        sys.exit("no execution samples in the recording")
    print(f"{n} samples; by thread pool:")
    for name, k in pools.most_common(top):
        print(f"  {100 * k / n:5.1f} %  {name}")
    print("hottest methods (self):")
    for name, k in methods.most_common(top):
        print(f"  {100 * k / n:5.1f} %  {name}")


if __name__ == "__main__":
    main()
