"""Ends what a driver's embedded Ray leaves behind once the driver is gone, however it went.

``curate.pool.start_ray`` starts this script (by path, stdlib only: nothing of curate is imported) in a
session of its own just before ``ray.init``, with Ray's temporary folder and the driver's pid as its
arguments and a pipe from the driver on its standard input, on which the driver writes the session
folder once Ray runs. Reading the pipe returns when the driver's end closes: the driver exited, or was
killed (even inside ``ray.init``: Ray names a session folder after the pid of the driver that starts it).

Why it is needed. Ray fate-shares its head processes (GCS, raylet) with the driver, but the raylet's
children notice late: after ``kill -9`` of a driver, the dashboard and runtime-env agents spend up to a
minute trying to report the dead raylet to a GCS that died with it, and idle workers linger too. And Ray
leaves its session folder in ``/tmp/ray`` even after a clean shutdown: one per run, dozens a day.

So: every process that still holds a file open under the session folder (every Ray process of that
session logs there; nothing else does) is killed, then the folder is removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time


def holders(folder: str, spare: tuple[int, ...] = ()) -> list[int]:
    """Processes with a file open under ``folder`` (Linux ``/proc``; elsewhere none are found), but not
    this one nor those in ``spare``."""
    found = []
    if not os.path.isdir("/proc"):
        return found
    prefix = folder.rstrip("/") + "/"
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in (os.getpid(), *spare):
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                    found.append(int(pid))
                    break
            except OSError:
                continue
    return found


def clean(folder: str, driver: int) -> None:
    """Kill the session's remaining processes and remove its folder (and ``session_latest`` if it points there).

    The driver is spared: it closes the pipe itself after a clean shutdown, while its own log files under the
    folder may still be open.
    """
    for _ in range(5):
        pids = holders(folder, spare=(driver,))
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)
    shutil.rmtree(folder, ignore_errors=True)
    latest = os.path.join(os.path.dirname(folder), "session_latest")
    try:
        if os.readlink(latest) == folder:
            os.unlink(latest)
    except OSError:
        pass


def sessions(root: str, driver: int, since: float, named: list[str]) -> list[str]:
    """The session folders of ``driver``: those it named on the pipe, and those Ray named after its pid
    (``session_<date>_<pid>``) since this watcher started (the driver may die inside ``ray.init``)."""
    found = {os.path.abspath(n) for n in named if os.path.basename(n).startswith("session_")}
    try:
        entries = os.listdir(root)
    except OSError:
        entries = []
    for name in entries:
        path = os.path.join(root, name)
        if name.startswith("session_") and name.endswith(f"_{driver}") and not os.path.islink(path):
            try:
                if os.stat(path).st_ctime >= since - 5:
                    found.add(path)
            except OSError:
                continue
    return sorted(found)


def main() -> None:
    root, driver = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    since = time.time()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver
    named = sys.stdin.buffer.read().decode("utf-8", "replace").split()  # returns when the driver's end closes
    for folder in sessions(root, driver, since, named):
        clean(folder, driver)


if __name__ == "__main__":
    main()
