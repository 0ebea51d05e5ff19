"""The proxy started as a child by a parent that is then killed exits by itself: no orphans."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

PARENT = r"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "proxy", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
                          "--parent-watch", "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
for line in child.stdout:
    if "control on" in line:
        break
print(child.pid, flush=True)
child.wait()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes: reaped by init once the parent is gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and /proc are POSIX; Windows closes the pipe the same way")
@pytest.mark.timeout(60)
def test_child_proxy_exits_when_its_parent_is_killed() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=root)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert _alive(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    parent.stdout.close()
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(child_pid)  # readable when the process ends: a real wait on a non-child
        except ProcessLookupError:
            fd = None
        if fd is not None:
            with os.fdopen(fd) as f:
                select.select([f], [], [], 15)
    else:
        deadline = time.monotonic() + 15
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # no pidfd (macOS): poll, bounded by the deadline
    if _alive(child_pid):
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("the proxy outlived its killed parent")
