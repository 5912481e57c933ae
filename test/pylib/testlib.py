"""Shared by the Python integration suites (test/integration, test/agent_integration,
test/request_path): bounded waiting, atomic file replacement, and a child process whose
output lines are collected by a reader thread.

Nothing here sleeps to synchronise on a process: LogProcess.wait_log blocks on a
condition variable that the reader thread signals for every line, bounded by a deadline.
wait_until is for state that has no event to wait on (a file, an HTTP answer); it
polls, and fails with a clear message after its timeout.
"""

import json
import os
import signal
import subprocess
import threading
import time

# Generous: the same tests run under AddressSanitizer on a loaded 2-core machine.
DEADLINE = 30.0


def wait_until(predicate, what, timeout=DEADLINE, interval=0.02):
    """Polls predicate() until it returns a truthy value (returned); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def write_atomically(path, text):
    """Replaces `path` with `text` in one rename, as a careful writer would."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class LogProcess:
    """A child process whose output lines are collected as text and, when a line is a
    JSON object, parsed (our binaries log one JSON object per line).

    stream="stderr": stdout is discarded and stderr is read (the webhook logs to stderr);
    stream="merged": stdout and stderr are read together (the agent, the test STS).
    """

    def __init__(self, argv, env=None, stream="merged"):
        self.argv = [str(a) for a in argv]
        self.raw = []    # every line, as text, in order
        self.lines = []  # the lines that are JSON objects, parsed, in order
        self.cond = threading.Condition()
        if stream == "stderr":
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, env=env)
            self._pipe = self.proc.stderr
        elif stream == "merged":
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, env=env)
            self._pipe = self.proc.stdout
        else:
            raise ValueError(f"stream must be 'stderr' or 'merged', not {stream!r}")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self._pipe:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                line = json.loads(text)
            except ValueError:
                line = None
            with self.cond:
                self.raw.append(text)
                if isinstance(line, dict):
                    self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    # What the process said -------------------------------------------------------------
    def output(self):
        with self.cond:
            return list(self.raw)

    def text(self):
        with self.cond:
            return "\n".join(self.raw)

    def json_lines(self):
        with self.cond:
            return list(self.lines)

    def log_count(self):
        with self.cond:
            return len(self.lines)

    def wait_log(self, predicate, what, timeout=DEADLINE, start=0):
        """Waits for a JSON line (at index >= start) matching predicate and returns it.
        Fails at the deadline, or at once when the process exited without printing it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no log line {what} within {timeout}s; output:\n" + "\n".join(self.raw[-60:]))
                if self.proc.poll() is not None and not self.reader.is_alive():
                    raise AssertionError(f"process exited ({self.proc.returncode}) before logging {what}; "
                                         "output:\n" + "\n".join(self.raw[-60:]))
                self.cond.wait(min(remaining, 0.5))

    def wait_for(self, predicate, what):
        return self.wait_log(predicate, what)

    # Lifecycle ---------------------------------------------------------------------------
    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=DEADLINE):
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return rc

    def stop(self):
        """SIGTERM, then SIGKILL after the deadline; returns the exit code. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._close()

    def _close(self):
        self.reader.join(timeout=5)
        if not self.reader.is_alive() and not self._pipe.closed:
            self._pipe.close()
