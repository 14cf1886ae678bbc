"""Thread selection (seqimpute.threads): --threads, else OMP_NUM_THREADS, else the cores the process may use
(affinity capped by a cgroup quota); `seqimpute train` obeys it and records it in the run folder."""

import pytest
import torch

from seqimpute import threads
from seqimpute.cli import main
from seqimpute.errors import SeqImputeError
from seqimpute.runs import read_config


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert threads.cgroup_cpu_quota(v1) == 3.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")  # v1's "no quota"
    assert threads.cgroup_cpu_quota(v1) is None
    assert threads.cgroup_cpu_quota(tmp_path / "absent") is None


def test_usable_cores_is_the_affinity_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda root=None: None)
    assert threads.usable_cores() == 4
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda root=None: 1.5)
    assert threads.usable_cores() == 2  # a part-core quota still runs the extra thread part of the time
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda root=None: 8.0)
    assert threads.usable_cores() == 4


def test_choose_prefers_the_flag_then_the_environment(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 6)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.choose() == 6
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose() == 1
    assert threads.choose(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "two")
    with pytest.raises(SeqImputeError, match="OMP_NUM_THREADS='two' is not a whole number"):
        threads.choose()
    with pytest.raises(SeqImputeError, match="threads must be a whole number of at least 1"):
        threads.choose(0)


def _train(tmp_path, name, *extra):
    run = tmp_path / name
    assert main(["train", "--model", "gpsi-add", "--data", "sklearn-digits", "--mask", "mcar:0.7", "--run", str(run),
                 "--updates", "2", "--batch", "8", "--set", "hidden=16", "--set", "z=4", "--set", "steps=2",
                 "--set", "valid_size=16", "--quiet", *extra]) == 0
    return read_config(run)["runtime"]


def test_train_obeys_threads_and_omp_num_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _train(tmp_path, "default")["threads"] == 2  # every usable core by default
    assert _train(tmp_path, "flag", "--threads", "1")["threads"] == 1
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(2)
    runtime = _train(tmp_path, "env")
    assert runtime["threads"] == 1 and runtime["cpu"]  # the run records the CPU it trained on
