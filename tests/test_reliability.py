"""Reliability (issue 10): runs survive SIGKILL (also mid-checkpoint) and resume exactly, numerical faults are
skipped / restored / reported, untrusted run folders are refused through the CLI, and CPU runs are bit-for-bit
repeatable."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seqimpute import distributed, runs
from seqimpute import train as train_mod
from seqimpute.cli import main
from seqimpute.models.objectives import training_loss
from seqimpute.optim import budget
from seqimpute.runs import load_checkpoint, load_run_model, read_metrics
from seqimpute.train import TrainConfig, train

TINY = {"hidden": 16, "z": 4, "steps": 2}
WALL_CLOCK = ("elapsed_s", "images_per_s")  # the only fields that may differ between two runs of one seed


def cfg(**kw):
    base = dict(model="gpsi-add", data="sklearn-digits", mask="mcar:0.7", model_options=TINY, updates=30,
                batch=32, valid_every=10, valid_size=50, ckpt_every=5, log_every=5)
    base.update(kw)
    return TrainConfig(**base)


def params(run, which="last"):
    model, _, _ = load_run_model(run, which)
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_params(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def timeless(records):
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in records]


class one_thread:
    """torch on one thread for a block, as the OMP_NUM_THREADS=1 subprocesses run."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


# ------------------------------------------------------------------------------------------- 1. crash safety

UPDATES = 120
CRASH_ARGV = ["train", "--model", "gpsi-add", "--data", "sklearn-digits", "--mask", "mcar:0.7", "--updates",
              str(UPDATES), "--batch", "32", "--seed", "3", "--quiet", "--set", "hidden=16", "--set", "z=4",
              "--set", "steps=2", "--set", "ckpt_every=5", "--set", "log_every=5", "--set", "valid_every=10",
              "--set", "valid_size=50"]


def _partials(run: Path):
    return sorted(p.name for p in run.glob(".*.part"))


def _last_step(run: Path) -> int:
    steps = [r["step"] for r in read_metrics(run) if "loss" in r]
    return steps[-1] if steps else 0


def _launch(run: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", runs._SLOW_WRITE_ENV: "0.1"}  # 100 ms between write and rename
    return subprocess.Popen([sys.executable, "-m", "seqimpute", *CRASH_ARGV, "--run", str(run)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, ready, timeout=900.0) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; False when the process ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("the training subprocess neither progressed nor ended")


def _kill_and_check(run: Path, how: str, after: int, rng: random.Random, before) -> bool:
    """Launch the command, SIGKILL it past update ``after`` (inside a checkpoint write, or a random 0-60 ms later),
    check the folder holds a complete checkpoint, and say whether the kill landed inside a write."""
    proc = _launch(run)
    if how == "mid-write":  # kill while a checkpoint's temporary file is still unrenamed
        ready = lambda: _last_step(run) >= after and any(p.startswith((".last.pt", ".best.pt")) for p in _partials(run))
    else:  # training, validating, logging or writing: wherever the process happens to be
        delay, t_hit = rng.uniform(0, 0.06), []

        def ready():
            if _last_step(run) < after:
                return False
            t_hit or t_hit.append(time.monotonic())
            return time.monotonic() - t_hit[0] >= delay
    assert _kill_when(proc, ready), f"the run finished before the {how} kill after update {after}"
    hit = bool(_partials(run))
    ck = load_checkpoint(run / "last.pt")  # never torn: the previous complete checkpoint (or the new one)
    assert ck["step"] % 5 == 0 and ck["step"] <= _last_step(run)
    assert before is None or ck["step"] >= before
    model, _, _ = load_run_model(run, "last")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    read_metrics(run)  # a torn last line is skipped, never an error
    return hit


def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path):
    with one_thread():  # the reference, in-process, on one thread like the subprocesses
        assert main([*CRASH_ARGV, "--run", str(tmp_path / "ref")]) == 0
    run = tmp_path / "crashed"
    rng = random.Random(10)
    kills = [("mid-write", rng.randrange(10, 40)), ("random", rng.randrange(45, 75)), ("random", rng.randrange(80, 110))]
    for how, after in kills:
        for _ in range(5):  # a mid-write kill can miss its window on a busy machine: that one was a random kill
            before = load_checkpoint(run / "last.pt")["step"] if (run / "last.pt").exists() else None
            hit = _kill_and_check(run, how, after, rng, before)
            if hit or how != "mid-write":
                break
            after = _last_step(run) + 1
        assert hit or how != "mid-write", "no kill landed inside a checkpoint write"
    proc = _launch(run)  # the same command again finishes the run
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"resuming" in out
    assert _partials(run) == []
    assert load_checkpoint(run / "last.pt")["step"] == UPDATES
    assert same_params(params(tmp_path / "ref"), params(run))
    assert same_params(params(tmp_path / "ref", "best"), params(run, "best"))
    # the metrics tell one history: every step once, equal to the uninterrupted run's but for wall-clock fields
    assert timeless(read_metrics(run)) == timeless(read_metrics(tmp_path / "ref"))
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line)


def test_resume_drops_metrics_logged_after_the_checkpoint_and_torn_lines(tmp_path):
    run = tmp_path / "r"
    train(run, cfg(), progress_bar=False, session_updates=10)  # stops with last.pt at step 10
    ref = tmp_path / "ref"
    train(ref, cfg(), progress_bar=False)
    with open(run / "metrics.jsonl", "a") as f:  # what a run killed at update 13, mid-line, would have left
        f.write(json.dumps({"step": 12, "event": "skipped_update", "cause": "non-finite loss"}) + "\n")
        f.write('{"step": 13, "images": 41')
    (run / ".last.pt.abc123.part").write_bytes(b"half a checkpoint")
    assert [r["step"] for r in read_metrics(run)][-1] == 12  # the torn line is skipped
    train(run, None, progress_bar=False)
    assert not list(run.glob(".*.part"))
    assert timeless(read_metrics(run)) == timeless(read_metrics(ref))


def test_a_run_killed_before_its_first_checkpoint_starts_over_cleanly(tmp_path):
    run = tmp_path / "r"
    train(run, cfg(), progress_bar=False, session_updates=3)  # pretend no checkpoint was reached
    (run / "last.pt").unlink()
    (run / "best.pt").unlink(missing_ok=True)
    runs.append_metrics(run, {"step": 3, "images": 96, "loss": 1.0})
    train(run, cfg(), progress_bar=False)
    train(tmp_path / "ref", cfg(), progress_bar=False)
    assert timeless(read_metrics(run)) == timeless(read_metrics(tmp_path / "ref"))


def test_atomic_save_keeps_the_previous_checkpoint_when_a_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    good = {"format": runs.CHECKPOINT_FORMAT, "version": 1, "step": 5}
    runs.atomic_save(good, path)

    def dies(obj, f):  # the write fails halfway (disk full, a kill with Python still running finalisers)
        f.write(b"PK\x03\x04 half")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(OSError):
        runs.atomic_save({**good, "step": 10}, path)
    assert load_checkpoint(path)["step"] == 5
    assert not list(tmp_path.glob(".*.part"))


# ------------------------------------------------------------------------------------------- 2. numerical faults


class _NaNGrad(torch.autograd.Function):
    """Identity forward; NaN gradients backward: a finite loss with poisoned gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


def inject(monkeypatch, loss_faults=(), grad_faults=(), always=False):
    """Corrupt the training loss of chosen calls (0-based, one call per update attempt)."""
    calls = {"n": 0}
    real = distributed.training_loss

    def faulty(policy, *args, **kwargs):
        loss, stats = real(policy, *args, **kwargs)
        i = calls["n"]
        calls["n"] += 1
        if always or i in loss_faults:
            loss = loss * float("nan")
        elif i in grad_faults:
            loss = _NaNGrad.apply(loss)
        return loss, stats

    monkeypatch.setattr(distributed, "training_loss", faulty)
    return calls


def test_nan_loss_and_nan_gradients_are_skipped_and_logged(tmp_path, monkeypatch):
    inject(monkeypatch, loss_faults={3, 17}, grad_faults={8, 9})
    out = train(tmp_path / "r", cfg(), progress_bar=False)
    assert out["step"] == 30
    recs = read_metrics(tmp_path / "r")
    events = [(r["step"], r["cause"]) for r in recs if r.get("event") == "skipped_update"]
    assert events == [(4, "non-finite loss"), (9, "non-finite gradient"), (10, "non-finite gradient"),
                      (18, "non-finite loss")]
    assert sum(r["skipped"] for r in recs if "skipped" in r) == 4
    assert not any(r.get("event") == "restored" for r in recs)
    for v in params(tmp_path / "r").values():
        assert torch.isfinite(v).all()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in recs if "loss" in r)


def test_repeated_faults_restore_the_last_checkpoint_with_half_the_learning_rate(tmp_path, monkeypatch):
    run = tmp_path / "r"
    c = cfg(updates=40, ckpt_every=10, log_every=10, valid_every=20)
    calls = inject(monkeypatch, loss_faults=set(range(13, 18)))  # updates 14..18 fail: 5 in a row
    train(run, c, progress_bar=False)
    ck = load_checkpoint(run / "last.pt")
    assert ck["step"] == 40 and ck["lr_scale"] == 0.5 and ck["restores"] == 1
    assert calls["n"] == 40 + 8  # updates 11..18 were tried twice: back to the checkpoint of step 10
    recs = read_metrics(run)
    assert [r for r in recs if r.get("event") == "restored"] == [
        {"step": 10, "event": "restored", "lr_scale": 0.5, "restores": 1}]
    logged = [r["step"] for r in recs if "loss" in r]
    assert logged == [10, 20, 30, 40]  # the abandoned stretch left no metrics behind
    sched = budget(c.lr, c.warmup)
    at = {r["step"]: r for r in recs if "loss" in r}
    assert at[10]["lr"] == pytest.approx(sched(9, 9 / 40)[0], rel=1e-12)
    assert at[20]["lr"] == pytest.approx(0.5 * sched(19, 19 / 40)[0], rel=1e-12)
    # a resumed run keeps the lowered rate
    monkeypatch.setattr(distributed, "training_loss", training_loss)  # faults over
    train(run, cfg(updates=50, ckpt_every=10, log_every=10, valid_every=20), progress_bar=False)
    rec50 = [r for r in read_metrics(run) if r.get("step") == 50 and "loss" in r][0]
    assert rec50["lr"] == pytest.approx(0.5 * sched(49, 49 / 50)[0], rel=1e-12)
    assert load_checkpoint(run / "last.pt")["lr_scale"] == 0.5


def test_faults_that_never_stop_end_the_run_with_one_clear_line(tmp_path, monkeypatch, capsys):
    calls = inject(monkeypatch, always=True)
    run = tmp_path / "r"
    argv = ["train", "--model", "gpsi-add", "--data", "sklearn-digits", "--mask", "mcar:0.7", "--run", str(run),
            "--updates", "50", "--batch", "32", "--quiet", "--set", "hidden=16", "--set", "z=4", "--set", "steps=2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "training diverged" in err and "lower the learning rate" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    expected = train_mod.MAX_CONSECUTIVE_FAULTS * (train_mod.MAX_RESTORES + 1)
    assert calls["n"] == expected
    ck = load_checkpoint(run / "last.pt")  # the last good state is kept, finite, with the rate it had reached
    assert ck["lr_scale"] == 0.5 ** train_mod.MAX_RESTORES
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_scattered_faults_within_a_window_also_trigger_a_restore(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "MAX_FAULTS_IN_WINDOW", 4)
    monkeypatch.setattr(train_mod, "FAULT_WINDOW", 10)
    inject(monkeypatch, loss_faults={11, 13, 15, 17})  # never two in a row, four within ten updates
    train(tmp_path / "r", cfg(updates=30, ckpt_every=10), progress_bar=False)
    assert load_checkpoint(tmp_path / "r" / "last.pt")["lr_scale"] == 0.5


# ------------------------------------------------------------------------------------------- 4. untrusted files


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    train(folder / "add", cfg(updates=10), progress_bar=False)
    train(folder / "jump", cfg(model="gpsi-jump", updates=10), progress_bar=False)
    return folder


def _copy(trained, tmp_path, name="add"):
    dst = tmp_path / name
    shutil.copytree(trained / name, dst)
    return dst


def _exit2(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def _evil(marker):
    """An object whose unpickling runs a shell command that creates ``marker``."""
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return Evil()


def test_cli_eval_refuses_a_malicious_pickle_in_a_run_folder(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    marker = tmp_path / "pwned"
    for which in ("best.pt", "last.pt"):
        with open(run / which, "wb") as f:
            pickle.dump({"format": runs.CHECKPOINT_FORMAT, "version": 1, "model": _evil(marker)}, f)
    _exit2(["eval", str(run), "--samples", "1", "--quiet"], capsys, "refused")
    _exit2(["train", "--run", str(run), "--updates", "20", "--quiet"], capsys, "refused")
    assert not marker.exists()


def test_torch_zip_checkpoint_with_a_code_object_is_refused(trained, tmp_path, capsys):
    """The same attack inside torch's zip format (torch.save of an arbitrary object) is refused too."""
    run = _copy(trained, tmp_path)
    marker = tmp_path / "pwned"
    ck = load_checkpoint(run / "best.pt")
    ck["model_config"] = _evil(marker)
    torch.save(ck, run / "best.pt")
    _exit2(["eval", str(run), "--samples", "1", "--quiet"], capsys, "refused")
    assert not marker.exists()


def test_cli_refuses_a_checkpoint_of_a_newer_format(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    for which in ("best.pt", "last.pt"):
        ck = load_checkpoint(run / which)
        ck["version"] = runs.CHECKPOINT_VERSION + 1
        torch.save(ck, run / which)
    _exit2(["eval", str(run), "--samples", "1", "--quiet"], capsys, "newer seqimpute", "upgrade")
    _exit2(["train", "--run", str(run), "--updates", "20", "--quiet"], capsys, "newer seqimpute")


def test_cli_refuses_a_run_folder_of_a_different_model(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    for which in ("best.pt", "last.pt"):
        shutil.copy(trained / "jump" / which, run / which)
    _exit2(["eval", str(run), "--samples", "1", "--quiet"], capsys, "holds a gpsi-jump model")
    run2 = _copy(trained, tmp_path / "b")
    _exit2(["train", "--run", str(run2), "--model", "gpsi-jump", "--updates", "20", "--quiet"], capsys,
           "holds a gpsi-add run")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad-config", "extra-option", "no-state", "wrong-shape"])
def test_cli_refuses_damaged_checkpoints(trained, tmp_path, capsys, damage):
    run = _copy(trained, tmp_path)
    path = run / "last.pt"
    (run / "best.pt").unlink()
    ck = load_checkpoint(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(2000))
    elif damage == "bad-config":
        ck["model_config"] = "{not json"
        torch.save(ck, path)
    elif damage == "extra-option":
        ck["model_config"] = json.dumps({**json.loads(ck["model_config"]), "evil": 1})
        torch.save(ck, path)
    elif damage == "no-state":
        del ck["model"]
        torch.save(ck, path)
    else:
        ck["model"] = {k: torch.zeros(3) for k in ck["model"]}
        torch.save(ck, path)
    _exit2(["eval", str(run), "--samples", "1", "--quiet"], capsys)
    _exit2(["train", "--run", str(run), "--updates", "20", "--quiet"], capsys)


def test_cli_resume_refuses_a_checkpoint_without_training_state(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    ck = load_checkpoint(run / "last.pt")
    del ck["optimizer"]
    torch.save(ck, run / "last.pt")
    _exit2(["train", "--run", str(run), "--updates", "20", "--quiet"], capsys, "cannot be resumed")


# ------------------------------------------------------------------------------------------- 6. determinism


def test_the_same_seed_gives_the_same_metrics_bit_for_bit_on_cpu(tmp_path):
    c = cfg(updates=40, seed=7)
    train(tmp_path / "a", c, progress_bar=False)
    train(tmp_path / "b", cfg(updates=40, seed=7), progress_bar=False)
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert len(a) > 5 and timeless(a) == timeless(b)  # floats compared exactly (JSON keeps every bit)
    assert same_params(params(tmp_path / "a"), params(tmp_path / "b"))
    train(tmp_path / "c", cfg(updates=40, seed=8), progress_bar=False)
    assert timeless(read_metrics(tmp_path / "c")) != timeless(a)
