"""One folder per run: ``<run_dir>/checkpoints``, ``<run_dir>/logs``, ``<run_dir>/predictions``.

* ``default_run_dir(name)``: ``runs/<name>/<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... appended when
  that folder exists already), so two runs of one config never share a folder by accident.
* ``RunDirLock``: an exclusive ``fcntl`` lock on ``<run_dir>/.lock`` for the whole run; a second
  run into the same folder fails at once, naming the process holding it. The kernel drops the lock
  when the process dies, even by SIGKILL, so a killed run can be resumed straight away.
* ``prepare_run_dir``: ``fit`` into a folder that holds another run's checkpoints is refused unless
  it resumes (``ckpt_path``) or ``overwrite`` is set (which deletes the old checkpoints and logs).
"""
from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import IO

__all__ = ["RunDirError", "RunDirLock", "default_run_dir", "prepare_run_dir", "CHECKPOINTS", "LOGS", "PREDICTIONS"]

CHECKPOINTS, LOGS, PREDICTIONS = "checkpoints", "logs", "predictions"
LOCK_FILE = ".lock"


class RunDirError(RuntimeError):
    """A run folder that cannot be used: another run's checkpoints, or another process holds it."""


def default_run_dir(name: str, root: str | os.PathLike = "runs", now: float | None = None) -> Path:
    """``<root>/<name>/<local time YYYYmmdd-HHMMSS>``, with ``-2``, ``-3``, ... when it exists.

    Args:
        name: the run's name (the config file's stem).
        root: the parent of every run.
        now: the time stamp (seconds since the epoch; ``None`` = now).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    base = Path(root) / name / stamp
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{stamp}-{n}")
    return candidate


def existing_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    folder = Path(run_dir) / CHECKPOINTS
    return sorted(folder.glob("*.ckpt")) if folder.is_dir() else []


def prepare_run_dir(run_dir: str | os.PathLike, resuming: bool, overwrite: bool) -> Path:
    """Checks that ``fit`` may write into ``run_dir`` and creates it.

    Args:
        run_dir: the run folder.
        resuming: ``fit`` continues from a checkpoint (``--ckpt_path``): the folder may hold checkpoints.
        overwrite: delete the checkpoints and logs of a previous run in ``run_dir`` first.

    Raises:
        RunDirError: ``run_dir`` holds checkpoints and neither ``resuming`` nor ``overwrite``.
    """
    run_dir = Path(run_dir)
    found = existing_checkpoints(run_dir)
    if found and not resuming:
        if not overwrite:
            names = ", ".join(p.name for p in found[:5])
            raise RunDirError(
                f"run folder {run_dir} already holds the checkpoints of another run ({names}); "
                f"resume it with --ckpt_path {run_dir / CHECKPOINTS / 'last.ckpt'}, replace it with --overwrite, "
                f"or choose another folder with --run_dir"
            )
        for sub in (CHECKPOINTS, LOGS):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


class RunDirLock:
    """Exclusive lock of a run folder (``<run_dir>/.lock``, ``fcntl.flock``) held while a run writes there.

    Args:
        run_dir: the run folder (created if missing).
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fh: IO[str] | None = None

    def acquire(self) -> RunDirLock:
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunDirError(f"run folder {self.run_dir} is in use by another run ({holder}); wait for it to "
                              f"finish or choose another folder with --run_dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        import fcntl

        self._fh.seek(0)
        self._fh.truncate()
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
