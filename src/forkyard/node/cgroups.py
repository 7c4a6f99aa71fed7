"""cgroup v1 groups for one instance: limits, stats, and killing every process in it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    vcpus: float
    pids_max: int


class InstanceCgroup:
    """The cgroups /sys/fs/cgroup/<controller>/<parent>/<name> of one instance."""

    def __init__(self, parent: str, name: str, root: Path = CGROUP_ROOT) -> None:
        self.parent = parent
        self.name = name
        self.root = root

    def path(self, controller: str) -> Path:
        return self.root / controller / self.parent / self.name

    @property
    def paths(self) -> list[Path]:
        return [self.path(c) for c in CONTROLLERS if (self.root / c).is_dir()]

    def procs_file(self) -> Path:
        """The list of the group's processes (pids controller): empty once all have exited."""
        return self.path("pids") / "cgroup.procs"

    def exists(self) -> bool:
        return any(p.is_dir() for p in self.paths)

    def create(self, limits: Limits) -> None:
        for p in self.paths:
            p.mkdir(parents=True, exist_ok=True)
        mem = self.path("memory")
        limit = str(limits.memory_mb * 1024 * 1024)
        (mem / "memory.limit_in_bytes").write_text(limit)
        memsw = mem / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            with contextlib.suppress(OSError):
                memsw.write_text(limit)
        (self.path("pids") / "pids.max").write_text(str(limits.pids_max))
        cpu = self.path("cpu")
        (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        (cpu / "cpu.cfs_quota_us").write_text(str(int(limits.vcpus * CPU_PERIOD_US)))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for p in self.paths:
            with contextlib.suppress(OSError):
                found.update(int(x) for x in (p / "cgroup.procs").read_text().split())
        return found

    def freeze(self, frozen: bool) -> None:
        state = self.path("freezer") / "freezer.state"
        if not state.exists():
            return
        state.write_text("FROZEN" if frozen else "THAWED")
        if frozen:
            deadline = time.monotonic() + 1.0
            while state.read_text().strip() != "FROZEN" and time.monotonic() < deadline:
                time.sleep(0.001)

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILL every process; frozen first so nothing can fork in between. True when empty."""
        if not self.exists():
            return True
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return True
            self.freeze(True)
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.freeze(False)  # killed tasks only die once thawed
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)

    def remove(self) -> None:
        for p in self.paths:
            for _ in range(100):
                try:
                    p.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while the last tasks exit
                    time.sleep(0.005)

    def read_int(self, controller: str, file: str) -> int | None:
        try:
            return int((self.path(controller) / file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def memory_stat(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in (self.path("memory") / "memory.stat").read_text().splitlines():
                k, _, v = line.partition(" ")
                out[k] = int(v)
        return out


def owned_names(parent: str, root: Path = CGROUP_ROOT) -> set[str]:
    """Instance names that have a cgroup under <controller>/<parent> in any controller."""
    names: set[str] = set()
    for c in CONTROLLERS:
        d = root / c / parent
        if d.is_dir():
            names.update(e.name for e in d.iterdir() if e.is_dir())
    return names
