"""atalp_keras.training.run_lock: one process per run folder, with real
processes; a killed holder's lock is taken over."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from atalp_keras import artifacts
from atalp_keras.errors import UsageError
from atalp_keras.training import run_lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _holder(folder):
    """A second process that takes the lock of ``folder`` and sleeps."""
    code = textwrap.dedent(f"""
        import time
        from atalp_keras.training.run_lock import RunLock
        with RunLock({str(folder)!r}):
            print("held", flush=True)
            time.sleep(120)
        """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert process.stdout.readline().strip() == "held"
    return process


def test_second_process_refused_naming_the_holder(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        with pytest.raises(UsageError) as error:
            run_lock.check_unlocked(str(folder))
        assert f"pid {holder.pid}" in str(error.value)
        with pytest.raises(UsageError, match=f"pid {holder.pid}"):
            run_lock.RunLock(folder).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Killed: its lock stays behind, stale, and is taken over.
    assert os.path.isfile(artifacts.RunFolder(folder).lock)
    run_lock.check_unlocked(str(folder))
    with run_lock.RunLock(folder) as lock:
        held = run_lock.read_holder(lock.path)
        assert held["pid"] == os.getpid()
    assert os.listdir(folder) == []  # Released at the end.


def test_released_on_exception_and_exclusive_within_a_process(tmp_path):
    lock = run_lock.RunLock(tmp_path)
    with pytest.raises(RuntimeError):
        with lock:
            with pytest.raises(UsageError, match="in use"):
                run_lock.RunLock(tmp_path).acquire()
            raise RuntimeError("boom")
    assert not os.path.exists(lock.path)


def test_unreadable_lock_of_a_killed_writer_is_stale(tmp_path):
    path = artifacts.RunFolder(tmp_path).lock
    open(path, "w").close()  # Killed between creating and writing it.
    with run_lock.RunLock(tmp_path):
        pass
    dead = subprocess.Popen(["true"])
    dead.wait()
    time.sleep(0.05)
    assert not run_lock.pid_alive(dead.pid) and run_lock.pid_alive(os.getpid())
