"""Burst from zero and scale-to-zero memory, against a fresh `lamina up` (release build).

1. Burst from zero: N concurrent invokes of a function with no environments; the time
   until all are answered, cold starts, throttles (the `burst` client does the firing).
2. Memory: process RSS at idle (baseline), with 1,000 warm environments of a small
   function, and after they have all scaled to zero (target: within 10 % of baseline).

With --svg PATH it also samples the node's RSS every 100 ms from the idle baseline
through the 1,000 environments and their scale to zero, and draws that curve.

Usage: .venv/bin/python bench/scale_to_zero.py [--envs 1000] [--burst 500] [--svg PATH]
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time

import local_node
import plot

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"


def rss_mb(pid, field="VmRSS"):
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024


def breakdown(pid):
    return "  ".join(f"{f} {rss_mb(pid, f):.1f} MB" for f in ("RssAnon", "RssFile", "RssShmem"))


class RssCurve:
    """The process's RSS every 100 ms, from now until `stop`."""

    def __init__(self, pid):
        self.pid, self.seconds, self.mb = pid, [], []
        self.started, self.done = time.monotonic(), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            self.seconds.append(time.monotonic() - self.started)
            self.mb.append(rss_mb(self.pid))
            self.done.wait(0.1)

    def stop(self):
        self.done.set()
        self.thread.join()


def burst(endpoint, function, n, payload):
    out = subprocess.run(
        [TARGET / "burst", endpoint, function, str(n), payload],
        check=True, capture_output=True, text=True,
    ).stdout
    return out.strip()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--envs", type=int, default=1000)
    p.add_argument("--burst", type=int, default=500)
    p.add_argument("--idle-timeout", type=float, default=5.0)
    p.add_argument("--svg", help="draw the RSS curve over the environments' burst and drain")
    args = p.parse_args()
    data = tempfile.mkdtemp(prefix="lamina-scale-")
    proc, endpoint = local_node.start(
        TARGET / "lamina",
        ["--data-dir", data, "--idle-timeout", args.idle_timeout, "--max-environments", args.envs + 100,
         "--account-concurrency", max(args.envs, args.burst) + 100],
        subprocess.DEVNULL)
    if not endpoint:
        sys.exit("lamina up did not start")
    try:
        subprocess.run([sys.executable, ROOT / "bench" / "setup.py", endpoint], check=True,
                       capture_output=True)
        print(f"machine: {os.cpu_count()} cores; lamina release build; idle timeout {args.idle_timeout}s")
        print(f"\n-- burst from zero: {args.burst} concurrent invokes of `hello` (no environments yet)")
        print(burst(endpoint, "hello", args.burst, "{}"))
        print("\n-- the same burst again, now warm (baseline)")
        print(burst(endpoint, "hello", args.burst, "{}"))

        time.sleep(args.idle_timeout * 2 + 1)
        curve = RssCurve(proc.pid)
        baseline = rss_mb(proc.pid)
        print(f"\n-- memory: idle baseline RSS {baseline:.1f} MB ({breakdown(proc.pid)})")
        # Each invoke sleeps, so all of them hold an environment at once.
        print(burst(endpoint, "sleep", args.envs, '{"ms": 1500}'))
        warm = rss_mb(proc.pid)
        print(f"RSS with {args.envs} warm environments: {warm:.1f} MB "
              f"({(warm - baseline) * 1024 / args.envs:.0f} KB per environment; {breakdown(proc.pid)})")
        time.sleep(args.idle_timeout * 2 + 1)
        after = rss_mb(proc.pid)
        print(f"RSS after scale to zero: {after:.1f} MB "
              f"({(after / baseline - 1) * 100:+.1f} % of baseline; target within 10 %; {breakdown(proc.pid)})")
        curve.stop()
        if args.svg:
            plot.panels(args.svg, curve.seconds, [("node RSS (MB)", curve.mb)],
                        title=f"RSS: idle, {args.envs} environments at once, scale to zero "
                              f"(idle timeout {args.idle_timeout:g} s)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
