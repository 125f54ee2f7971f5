"""Starts a `lamina up` for a benchmark on a port the kernel picks, with the key the
benchmarks sign with, and returns it with the endpoint it printed; reads its metrics."""

import os
import re
import subprocess
import threading
import urllib.request


def start(binary, args, stderr):
    """`binary up --listen 127.0.0.1:0 *args`; returns (process, endpoint or None)."""
    proc = subprocess.Popen(
        [binary, "up", "--listen", "127.0.0.1:0", *map(str, args)],
        stdout=subprocess.PIPE, stderr=stderr, text=True,
        env=dict(os.environ, LAMINA_ROOT_ACCESS_KEY_ID="test", LAMINA_ROOT_SECRET_ACCESS_KEY="test"),
    )
    endpoint = None
    for line in proc.stdout:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            endpoint = m.group(1)
            break
    # Whatever else the node prints must not fill the pipe and stall it.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, endpoint


def metric_total(endpoint, metric):
    """The sum of a counter over its label sets, from the node's /metrics."""
    text = urllib.request.urlopen(f"{endpoint}/metrics", timeout=10).read().decode()
    return sum(float(m[2]) for m in re.finditer(rf"^{metric}(\{{[^}}]*\}})? (\S+)$", text, re.M))
