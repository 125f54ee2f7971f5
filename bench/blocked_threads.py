"""Where a process's threads block in the kernel: samples every thread's state from /proc
every few milliseconds and, for each thread in uninterruptible sleep (state D), its
kernel stack; prints the stacks by thread name, most sampled first. Needs root (for
/proc/<pid>/task/<tid>/stack). The sampling takes part of a core, so run it beside a load
that is measured for this, not beside a figure that is quoted.

Usage: python3 bench/blocked_threads.py --match 'debug/lamina up' [--wait 14] [--seconds 60]
docs/benchmarks.md ("Where the p99 spikes are not") quotes it beside bench/soak.py.
"""

import argparse
import collections
import os
import subprocess
import sys
import time


def find(pattern, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-f", "-o", pattern], capture_output=True, text=True)
        if found.stdout.strip():
            return found.stdout.split()[0]
        time.sleep(0.2)
    sys.exit(f"no process matches {pattern!r}")


def stat(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        text = f.read()
    close = text.rfind(")")
    return text[text.find("(") + 1:close], text[close + 2]


def stack(pid, tid, depth):
    try:
        with open(f"/proc/{pid}/task/{tid}/stack") as f:
            frames = [line.split()[1].split("+")[0] for line in f.read().splitlines()[:depth]]
    except (OSError, IndexError):
        return "?"
    return " <- ".join(frames) or "?"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--match", required=True, help="pgrep -f pattern of the process")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait before sampling")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--depth", type=int, default=8, help="kernel frames kept per stack")
    args = p.parse_args()
    pid = find(args.match, 600)
    time.sleep(args.wait)
    blocked = collections.Counter()
    first_seen = {}
    samples = 0
    start = time.monotonic()
    tids, listed = [], 0.0
    while (now := time.monotonic()) - start < args.seconds:
        if now - listed > 1:
            try:
                tids, listed = os.listdir(f"/proc/{pid}/task"), now
            except FileNotFoundError:
                break
        samples += 1
        for tid in tids:
            try:
                name, state = stat(pid, tid)
            except OSError:
                continue
            if state == "D":
                key = (name, stack(pid, tid, args.depth))
                blocked[key] += 1
                first_seen.setdefault(key, now - start)
        time.sleep(0.001)
    print(f"{samples} samples of pid {pid} over {time.monotonic() - start:.0f} s")
    print("| samples | thread | first seen (s) | kernel stack |")
    print("|---|---|---|---|")
    for (name, frames), n in blocked.most_common():
        print(f"| {n} | {name} | {first_seen[(name, frames)]:.1f} | {frames} |")


if __name__ == "__main__":
    main()
