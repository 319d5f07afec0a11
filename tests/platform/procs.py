"""Start, record, wait for and stop the background processes of the test platform.

Every process starts in its own session (so it leads a process group) and its pid is
recorded under ``<state>/pids/<name>.pid`` before anything waits on it; stopping sends
SIGTERM to each recorded group, waits, then SIGKILLs what is left and checks that no
member of any group survives. That record is what makes ``down.sh`` leave nothing behind
even when ``up.sh`` failed half-way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class StartError(RuntimeError):
    """A service did not become ready; the message names it and its log file."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "".join(log.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return "(no log)"


class ProcessGroup:
    """The processes of one state directory."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.pid_dir = state / "pids"
        self.log_dir = state / "logs"

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in a new session, logging to ``logs/<name>.log``; record its pid."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log(name)
        with log.open("ab") as fh:
            fh.write(f"\n$ {' '.join(cmd)}\n".encode())
            fh.flush()
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                user=user,
            )
        (self.pid_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
        return proc

    def wait_ready(
        self,
        name: str,
        proc: subprocess.Popen[bytes] | None,
        check: Callable[[], bool],
        *,
        timeout: float,
        interval: float = 0.2,
    ) -> None:
        """Poll ``check`` until true; fail fast when the process died, with its log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise StartError(
                    f"{name} exited with {proc.returncode} while starting; log: {self.log(name)}\n"
                    + log_tail(self.log(name))
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(interval)
        raise StartError(
            f"{name} not ready after {timeout:.0f}s; log: {self.log(name)}\n"
            + log_tail(self.log(name))
        )

    def recorded(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if not self.pid_dir.is_dir():
            return out
        for f in sorted(self.pid_dir.glob("*.pid")):
            with contextlib.suppress(ValueError):
                out[f.stem] = int(f.read_text().strip())
        return out

    def stop(self, name: str, *, timeout: float = 15.0) -> None:
        pid = self.recorded().get(name)
        if pid is not None:
            stop_groups([pid], timeout=timeout)
        (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)

    def stop_all(self, *, timeout: float = 15.0, order: Sequence[str] = ()) -> list[int]:
        """Stop every recorded group (``order`` first); return pids still alive (should be [])."""
        rec = self.recorded()
        names = [n for n in order if n in rec] + [n for n in rec if n not in order]
        for name in names:
            stop_groups([rec[name]], timeout=timeout)
        left = [p for p in rec.values() if _group_alive(p)]
        if not left:
            for name in rec:
                (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)
        return left


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader of our own making still "exists"; reap it if it is our child.
    with contextlib.suppress(ChildProcessError):
        pid, _ = os.waitpid(pgid, os.WNOHANG)
        if pid == pgid:
            return _group_alive_no_reap(pgid)
    return _group_alive_no_reap(pgid)


def _group_alive_no_reap(pgid: int) -> bool:
    """True when a non-zombie process of group ``pgid`` exists (reads /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the ")" of comm: state ppid pgrp ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_groups(pgids: Sequence[int], *, timeout: float = 15.0) -> None:
    """SIGTERM the groups, wait up to ``timeout``, then SIGKILL whatever remains."""
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_group_alive(p) for p in pgids):
        time.sleep(0.1)
    for pgid in pgids:
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_group_alive(p) for p in pgids):
        time.sleep(0.05)
