"""How many CPU threads torch may use, chosen from the cores that are actually free.

PyTorch's intra-op threads spin at every parallel region waiting for each other; when another
process holds a core, the thread the OS has descheduled stalls all the others, and a tiny
model's training drops from about 40 steps/s to about 1 (2 cores, one busy). Two defences:
- `choose("auto")` counts the idle cores now (from /proc/stat over a short window; the
  1-minute load average elsewhere) and takes that many threads, at least one;
- the command line caps how long an idle OpenMP thread spins before it sleeps
  (`GOMP_SPINCOUNT=1000`, unless the user set it or OMP_WAIT_POLICY) before torch loads, so a
  core taken later stalls the others less. Measured on 2 cores (docs/training.md): as fast as
  torch's default on a quiet machine (`OMP_WAIT_POLICY=PASSIVE` costs 30-40% there), 1.6x
  faster than it when a busy process arrives after the start, and with `choose` 2.2x faster
  beside a process that was there first.
`benchmarks/threads_under_load.py` measures these settings against a quiet machine.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass

from mechlistops.errors import ConfigError

MAX_THREADS = 256
WAIT_ENV = {"GOMP_SPINCOUNT": "1000"}  # libgomp (torch's OpenMP on Linux): spin, then sleep


def die_with_parent(parent: int) -> None:
    """Make this worker process die with the process that started it (`parent`, its pid):
    without this, one killed with SIGKILL leaves its workers running on, orphaned."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: SIGKILL me when my parent dies
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def set_wait_policy(environ=os.environ) -> None:
    """Cap OpenMP's spinning, unless the user chose a wait policy or spin count; must run
    before torch loads."""
    if "OMP_WAIT_POLICY" in environ:
        return
    for key, value in WAIT_ENV.items():
        environ.setdefault(key, value)


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    why: str

    def __str__(self) -> str:
        return f"{self.threads} CPU thread{'s' * (self.threads != 1)} ({self.why})"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def idle_cores(window_s: float = 0.2) -> float | None:
    """Cores idle over the next `window_s` seconds (None where it cannot be measured)."""

    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, total (no guest)

    try:
        idle0, total0 = sample()
        time.sleep(window_s)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        try:
            return max(0.0, (os.cpu_count() or 1) - os.getloadavg()[0])
        except (OSError, AttributeError):
            return None
    if total1 <= total0:
        return None
    return (idle1 - idle0) / (total1 - total0) * (os.cpu_count() or 1)


def parse_threads(text: str) -> int | None:
    """`--threads` value: "auto" (None) or a count."""
    if text == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"--threads must be 'auto' or a count, got {text!r}") from None
    if not 1 <= n <= MAX_THREADS:
        raise ConfigError(f"--threads must be in 1..{MAX_THREADS}, got {n}")
    return n


def choose(requested: int | None = None) -> ThreadChoice:
    """The thread count: `requested` if given, else the free cores (at least 1)."""
    cores = usable_cores()
    if requested is not None:
        return ThreadChoice(requested, "--threads")
    if os.environ.get("OMP_NUM_THREADS"):
        return ThreadChoice(parse_threads(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS")
    idle = idle_cores()
    if idle is None:
        return ThreadChoice(cores, f"{cores} usable cores")
    free = max(1, min(cores, int(idle + 0.5)))
    busy = "" if free == cores else f"; {cores - free} busy"
    return ThreadChoice(free, f"{free} of {cores} cores free{busy}; --threads to override")


def apply(choice: ThreadChoice) -> ThreadChoice:
    import torch

    torch.set_num_threads(choice.threads)
    return choice
