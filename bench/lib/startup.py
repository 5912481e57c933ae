#!/usr/bin/env python3
"""Measures start-up time to ready and RSS of a TLS server.

usage: startup.py RUNS CA_FILE PORT -- COMMAND...
Starts COMMAND RUNS times; for each run measures the time from exec to the first
`GET /readyz` answered 200 over TLS (verifying the server certificate against CA_FILE),
then reads VmRSS, stops the process with SIGTERM and waits for it. Prints one JSON
object: median start-up ms, min, max, and the median ready RSS in KiB.
"""
import http.client
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import time

runs, ca_file, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
command = sys.argv[sys.argv.index("--") + 1:]
context = ssl.create_default_context(cafile=ca_file)


def ready():
    try:
        conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=1)
        conn.request("GET", "/readyz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


times, rss = [], []
for _ in range(runs):
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = start + 30
    while not ready():
        if proc.poll() is not None or time.perf_counter() > deadline:
            sys.exit(f"server did not become ready (exit code {proc.poll()})")
        time.sleep(0.0005)  # a benchmark's polling interval, not test synchronisation
    times.append((time.perf_counter() - start) * 1000)
    rss.append(rss_kib(proc.pid))
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
print(json.dumps({"start_ms_median": round(statistics.median(times), 1),
                  "start_ms_min": round(min(times), 1), "start_ms_max": round(max(times), 1),
                  "rss_kib_median": int(statistics.median(rss))}))
