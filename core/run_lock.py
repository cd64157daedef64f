"""One job per run directory: an exclusive OS file lock on ``<run_dir>/.w2v.lock``.

The lock is ``flock`` on an open file, so the kernel drops it when the holding
process exits for any reason (a SIGKILLed run never leaves a stale lock); the
file itself stays and says who held it last. Under ``torchrun`` only global
rank 0 takes it: the ranks of one job share the directory by design. Holding it
again from the same process (a recipe run inside a stage) is allowed.

Example::

    with RunLock(run_dir):          # exit 2 naming the holder's pid when taken
        run_the_stages(run_dir)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import UserError

LOCK_FILE = ".w2v.lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not protected from each other
    fcntl = None  # type: ignore[assignment]

#: run directories this process holds: resolved path -> [open file, depth]
_HELD: dict[str, list] = {}


class RunDirectoryBusy(UserError):
    """Another job holds the run directory's lock."""


def _global_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def read_holder(run_dir: str | Path) -> dict:
    """What the lock file says about its last holder (``pid``, ``host``, ``command``, ``since``)."""
    try:
        return json.loads((Path(run_dir) / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}


class RunLock:
    """Exclusive lock of a run directory for this job (rank 0 only; a no-op on other ranks).

    Args:
        run_dir: the run directory (created if missing).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.key = str(self.run_dir.resolve())
        self.held = False

    def acquire(self) -> "RunLock":
        if fcntl is None or _global_rank() != 0:
            return self
        if self.key in _HELD:
            _HELD[self.key][1] += 1
            self.held = True
            return self
        path = self.run_dir / LOCK_FILE
        f = open(path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            holder = {}
            for _ in range(20):  # the holder writes its pid right after locking
                holder = read_holder(self.run_dir)
                if holder.get("pid"):
                    break
                time.sleep(0.05)
            who = f"pid {holder['pid']}" if holder.get("pid") else "another process"
            if holder.get("host") and holder.get("host") != socket.gethostname():
                who += f" on {holder['host']}"
            since = f", since {holder['since']}" if holder.get("since") else ""
            raise RunDirectoryBusy(
                f"run directory {self.run_dir} is in use by another w2v job ({who}{since}: "
                f"{holder.get('command', '?')}).",
                hint="Wait for it to finish (or stop it), or give this run another `--out`.") \
                from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "command": " ".join(sys.argv)[:500]}) + "\n")
        f.flush()
        _HELD[self.key] = [f, 1]
        self.held = True
        return self

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        entry = _HELD.get(self.key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self.key]
            entry[0].close()  # closing the file drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
