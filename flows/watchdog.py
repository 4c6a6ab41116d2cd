"""End the processes a command started (the temporary Prefect server, workers) when it dies, or is stopped.

Prefect starts its temporary server as a plain child process, so a command
killed with SIGKILL would leave it running with no parent. The command starts
this watchdog (``python -m flows.watchdog <pid>``) in a session of its own,
so a Ctrl-C at the terminal does not stop it; it notes every descendant of the
command while the command lives, and when the command is gone, however it
died, it ends those that still run. Linux only: it reads ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

POLL_S = 0.1


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it is gone: a pid plus this is unique."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: count fields after its closing one.
    return int(stat.rsplit(")", 1)[1].split()[19])


def descendants(root: int) -> list[int]:
    """The pids of every living descendant of ``root`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def end_processes(processes: Iterable[tuple[int, int | None]], wait_s: float = 2.0) -> None:
    """Kill each ``(pid, start_time)`` still running, and wait up to ``wait_s`` for them to be gone.

    SIGKILL, not SIGTERM: the temporary server answers SIGTERM with a page of
    tracebacks about the requests it was serving, and its SQLite database
    survives a kill. The start time guards against a pid the kernel has since
    given to another process.
    """
    alive = [(pid, started) for pid, started in processes if started and _running(pid, started)]
    for pid, _ in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [(pid, started) for pid, started in alive if _running(pid, started)]


def _running(pid: int, started: int) -> bool:
    """True while ``pid`` is the process that started at ``started`` and has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19]) == started and fields[0] != "Z"


def stop_on_signals(message: Callable[[], str]) -> None:
    """Make Ctrl-C and SIGTERM end this process at once: ``message()`` printed, children ended, exit 128 + signal."""

    def stop(signum: int, frame: Any) -> None:
        end_processes([(pid, start_time(pid)) for pid in descendants(os.getpid())])
        # os.write and os._exit: the flow thread may hold the locks of sys.stderr, logging or Prefect.
        os.write(2, (message() + "\n").encode())
        # The run folder is left unfinished, as after a kill; the same command reclaims or resumes it.
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def run_in_thread(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """``function(**kwargs)`` in a thread, so the main thread stays free to answer signals at once.

    Prefect also installs no SIGTERM handler of its own outside the main thread.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = function(**kwargs)
        except BaseException as error:  # re-raised in the main thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="run", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def watch(parent: int) -> None:
    """Note ``parent``'s descendants until it dies, then end those still running."""
    me = os.getpid()
    seen: dict[int, int | None] = {}
    # Once the parent dies this process is re-parented, so its parent pid changes.
    while os.getppid() == parent:
        for pid in descendants(parent):
            if pid != me and pid not in seen:
                seen[pid] = start_time(pid)
        time.sleep(POLL_S)
    end_processes(seen.items())


def start_watchdog() -> subprocess.Popen:
    """Start the watchdog of this process; it ends on its own once this process has."""
    return subprocess.Popen(
        [sys.executable, "-m", "flows.watchdog", str(os.getpid())],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))
