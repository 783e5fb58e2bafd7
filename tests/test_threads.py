"""Thread choice under load (mechlistops.threads): the count, its reasons, the wait policy."""

import os
import subprocess
import sys

import pytest

from mechlistops import threads
from mechlistops.errors import ConfigError


def test_requested_and_environment_counts_win(monkeypatch):
    assert threads.choose(3).threads == 3 and "--threads" in threads.choose(3).why
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.choose().threads == 2 and threads.choose().why == "OMP_NUM_THREADS"
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    with pytest.raises(ConfigError, match="'auto' or a count"):
        threads.choose()


def test_auto_takes_the_free_cores_and_at_least_one(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = threads.usable_cores()
    monkeypatch.setattr(threads, "idle_cores", lambda window_s=0.2: cores - 0.9)
    choice = threads.choose()
    assert choice.threads == max(1, cores - 1)
    monkeypatch.setattr(threads, "idle_cores", lambda window_s=0.2: 0.0)
    assert threads.choose().threads == 1 and "busy" in threads.choose().why
    monkeypatch.setattr(threads, "idle_cores", lambda window_s=0.2: None)  # not measurable
    assert threads.choose().threads == cores


def test_idle_cores_is_measured():
    idle = threads.idle_cores(0.05)
    assert idle is None or 0 <= idle <= os.cpu_count() + 1e-6


def test_parse_threads():
    assert threads.parse_threads("auto") is None and threads.parse_threads("4") == 4
    for bad in ("0", "-1", "1000", "x"):
        with pytest.raises(ConfigError):
            threads.parse_threads(bad)


def test_the_command_line_caps_spinning_before_torch_loads():
    code = (
        "import sys, os; import mechlistops; assert 'torch' not in sys.modules; "
        "import mechlistops.cli; print(os.environ.get('GOMP_SPINCOUNT'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == threads.WAIT_ENV["GOMP_SPINCOUNT"]
    for users in ({"GOMP_SPINCOUNT": "7"}, {"OMP_WAIT_POLICY": "ACTIVE"}):  # the user's choice
        out = subprocess.run(
            [sys.executable, "-c", code], env={**env, **users}, capture_output=True, text=True
        )
        assert out.stdout.strip() == users.get("GOMP_SPINCOUNT", "None")
