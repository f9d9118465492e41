"""An exclusive lock on a run folder for the life of a training process.

The lock is a file (``run.lock``) created with ``O_CREAT | O_EXCL``, so of
two processes starting on one folder exactly one gets it. It holds the
holder's pid, host name and start time: a second process is refused with the
holder's pid, and a lock left by a killed process (its pid is not alive on
this host) is taken over, with a warning.

A process on another host sharing the folder cannot be probed: its lock is
respected until it is removed by hand.
"""

import json
import os
import socket

from absl import logging

from atalp_keras import artifacts
from atalp_keras.errors import UsageError


def pid_alive(pid):
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Exists, owned by someone else.
        return True
    except (OverflowError, ValueError):
        return False
    return True


def read_holder(path):
    """The holder recorded in the lock file ``path`` (a dict), or None if
    there is no lock; ``{}`` for a file that cannot be parsed."""
    try:
        with open(path) as handle:
            holder = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def is_stale(holder):
    """Whether ``holder``'s process is known to be gone: same host, dead
    pid. An unreadable lock (a process killed while writing it) is stale."""
    if not holder:
        return True
    return (holder.get("host") == socket.gethostname()
            and not pid_alive(holder.get("pid", -1)))


def describe(holder):
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"started {holder.get('started', '?')}")


def refusal(folder, holder):
    """The `UsageError` of a folder locked by the live ``holder``."""
    return UsageError(
        f"'{folder}' is in use by another training run ({describe(holder)}); "
        f"wait for it to end, or use another --model_dir. Received: "
        f"model_dir={folder!r}")


def check_unlocked(folder):
    """Raises the refusal if a live process holds ``folder``'s lock (reads
    only; `RunLock.acquire` settles a race for real)."""
    holder = read_holder(artifacts.RunFolder(folder).lock)
    if holder is not None and not is_stale(holder):
        raise refusal(folder, holder)


class RunLock:
    """The lock of one run folder; use as a context manager.

    Args:
        folder: The run folder (created if missing).
    """

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.path = artifacts.RunFolder(self.folder).lock
        self.held = False

    def acquire(self):
        """Takes the lock, taking over a stale one once.

        Raises:
            UsageError: If a live process holds it.
        """
        os.makedirs(self.folder, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": artifacts.now()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                             0o644)
            except FileExistsError:
                holder = read_holder(self.path)
                if holder is not None and not is_stale(holder):
                    raise refusal(self.folder, holder) from None
                self._remove_stale(holder)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self.held = True
            return self
        raise refusal(self.folder, read_holder(self.path) or {})

    def _remove_stale(self, holder):
        """Moves the stale lock aside (atomically: of two processes taking
        it over, one moves it) and checks it is the one judged stale."""
        aside = f"{self.path}.stale-{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # Another process took it over first.
        moved = read_holder(aside)
        if moved != holder and moved:
            # A live process's fresh lock: put it back, it wins.
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            os.remove(aside)
            raise refusal(self.folder, moved)
        os.remove(aside)
        logging.warning("Took over the lock of '%s' left by a process that "
                        "is gone (%s).", self.folder, describe(holder or {}))

    def release(self):
        """Removes the lock file if this process still holds it."""
        if not self.held:
            return
        self.held = False
        holder = read_holder(self.path)
        if holder and holder.get("pid") == os.getpid() and \
                holder.get("host") == socket.gethostname():
            os.remove(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
