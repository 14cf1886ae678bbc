"""The trainer, evaluator and run folders: learning, exact resume, bound vs IW, checkpoints, CLI round trips."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

import seqimpute
from seqimpute import SeqImputeError, load_dataset
from seqimpute.cli import main
from seqimpute.evaluate import evaluate
from seqimpute.models.registry import build_model
from seqimpute.runs import load_checkpoint, load_run_model, read_metrics
from seqimpute.train import TrainConfig, train

SMALL = {"hidden": 32, "z": 8, "steps": 3}


def cfg(**kw):
    base = dict(model="gpsi-add", data="sklearn-digits", mask="mcar:0.7", model_options=SMALL, updates=40,
                batch=64, valid_every=20, valid_size=100, ckpt_every=10, log_every=10)
    base.update(kw)
    return TrainConfig(**base)


def params(run):
    model, _, _ = load_run_model(run, "last")
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    train(tmp_path / "a", cfg(), progress_bar=False)
    train(tmp_path / "b", cfg(), progress_bar=False, session_updates=15)  # "killed" after 15 updates
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 15
    train(tmp_path / "b", None, progress_bar=False)  # resume from the folder alone
    pa, pb = params(tmp_path / "a"), params(tmp_path / "b")
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


def test_extending_a_finished_run_continues_it(tmp_path):
    train(tmp_path / "a", cfg(updates=20), progress_bar=False)
    c = cfg(updates=30)
    out = train(tmp_path / "a", c, progress_bar=False)
    assert out["step"] == 30


def test_init_starts_a_new_run_from_another_runs_weights_with_a_fresh_optimiser(tmp_path):
    train(tmp_path / "a", cfg(updates=20), progress_bar=False)
    out = train(tmp_path / "c", cfg(updates=10, init=str(tmp_path / "a")), progress_bar=False)
    assert out["step"] == 10  # its own count of updates, a fresh schedule
    with pytest.raises(SeqImputeError, match="cannot start from .hidden=32 where this run has 16"):
        train(tmp_path / "d", cfg(updates=5, model_options={**SMALL, "hidden": 16}, init=str(tmp_path / "a")),
              progress_bar=False)
    with pytest.raises(SeqImputeError, match="neither a run folder nor a pretrained model"):
        train(tmp_path / "e", cfg(updates=5, init=str(tmp_path / "nowhere")), progress_bar=False)


def test_init_weights_are_where_the_new_run_starts(tmp_path):
    train(tmp_path / "a", cfg(updates=20), progress_bar=False)
    src, _, _ = load_run_model(tmp_path / "a", "best")
    train(tmp_path / "b", cfg(updates=1, lr=1e-12, warmup=0, init=str(tmp_path / "a")), progress_bar=False)
    b, _, _ = load_run_model(tmp_path / "b", "last")
    fresh = build_model("gpsi-add", 64, None, SMALL).state_dict()
    for k, v in b.state_dict().items():  # one update at a vanishing learning rate: the init's weights, not fresh ones
        assert torch.allclose(v, src.state_dict()[k], atol=1e-6), k
    assert any(not torch.allclose(v, fresh[k]) for k, v in b.state_dict().items())


def test_a_few_hundred_updates_lower_the_bound(tmp_path):
    valid = load_dataset("sklearn-digits", "valid")
    torch.manual_seed(0)
    before = evaluate(build_model("gpsi-add", 64, None, SMALL), valid, "mcar:0.7", samples=2)["bound_paper_units"]
    train(tmp_path / "r", cfg(updates=300, valid_every=100, lr=3e-3, warmup=50), progress_bar=False)
    model, _, _ = load_run_model(tmp_path / "r")
    after = evaluate(model, valid, "mcar:0.7", samples=2)["bound_paper_units"]
    assert after < 0.9 * before


@pytest.mark.parametrize("name", ["gpsi-add", "mean"])
def test_per_image_scores_add_up_to_the_score_and_leave_it_unchanged(name):
    from seqimpute.metrics import paper_units

    test = load_dataset("sklearn-digits", "test")
    torch.manual_seed(0)
    model = build_model(name, 64, None, SMALL if name == "gpsi-add" else {})
    model.fit(load_dataset("sklearn-digits", "train"))
    plain = evaluate(model, test, "mcar:0.7", samples=3, n=90, batch=40)
    res = evaluate(model, test, "mcar:0.7", samples=3, n=90, batch=40, per_image=True)
    scores, hidden = res.pop("per_image").values()
    assert res == plain  # the same seeded draws: asking for the records changes no score
    assert len(scores) == len(hidden) == 90 and sum(hidden) == pytest.approx(res["imputed_fraction"] * 90 * 64)
    assert paper_units(sum(scores), 64, sum(hidden)) == pytest.approx(res["score_paper_units"], rel=1e-6)  # float32 batch sums


def test_bound_is_not_below_the_importance_weighted_estimate(tmp_path):
    train(tmp_path / "r", cfg(updates=60), progress_bar=False)
    model, _, _ = load_run_model(tmp_path / "r")
    res = evaluate(model, load_dataset("sklearn-digits", "test"), "mcar:0.7", samples=20)
    # E[-log mean_k w_k] <= E[-log w] = bound (Jensen); the estimate also shares the bound's samples
    assert res["iw_nats_per_value"] <= res["bound_nats_per_value"] + 1e-3
    assert res["score_paper_units"] == res["bound_paper_units"]
    for key in ("score_nats_per_value", "bound_nats_per_value", "iw_nats_per_value", "unguided_nll_paper_units",
                "mse", "psnr"):
        assert np.isfinite(res[key]), key
    assert len(res["per_step_guided_nll_paper_units"]) == 4
    # the unguided figures take min(K, 10) rollouts by default; the guided ones (drawn first) do not change
    assert res["samples"] == 20 and res["unguided_samples"] == 10
    full = evaluate(model, load_dataset("sklearn-digits", "test"), "mcar:0.7", samples=20, unguided_samples=20)
    assert full["unguided_samples"] == 20
    assert full["bound_nats_per_value"] == res["bound_nats_per_value"] and full["iw_nats_per_value"] == res["iw_nats_per_value"]
    assert full["unguided_nll_paper_units"] != res["unguided_nll_paper_units"]


def test_evaluation_is_repeatable_and_uses_fixed_masks(tmp_path):
    train(tmp_path / "r", cfg(updates=10), progress_bar=False)
    model, _, _ = load_run_model(tmp_path / "r")
    test = load_dataset("sklearn-digits", "test")
    a = evaluate(model, test, "MCAR-70", samples=3)
    b = evaluate(model, test, "mcar:0.7", samples=3)
    assert a["bound_paper_units"] == b["bound_paper_units"]


def test_checkpoints_refuse_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "last.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "seqimpute-checkpoint", "x": Evil()}, f)
    with pytest.raises(SeqImputeError, match="refused|not a safe|corrupt"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_from_another_model_is_refused(tmp_path):
    train(tmp_path / "a", cfg(updates=5), progress_bar=False)
    train(tmp_path / "b", cfg(model="gpsi-jump", updates=5), progress_bar=False)
    (tmp_path / "a" / "last.pt").write_bytes((tmp_path / "b" / "last.pt").read_bytes())
    (tmp_path / "a" / "best.pt").unlink()
    with pytest.raises(SeqImputeError, match="holds a gpsi-jump model"):
        load_run_model(tmp_path / "a")


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_train_eval_impute_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--model", "gpsi-jump", "--data", "sklearn-digits", "--mask", "mcar:0.8", "--run", str(run),
            "--updates", "20", "--batch", "50", "--quiet", "--set", "hidden=24", "--set", "z=4", "--set", "steps=2"]
    assert main(args) == 0
    assert (run / "config.toml").exists() and (run / "last.pt").exists() and (run / "metrics.jsonl").exists()
    assert main(["eval", str(run), "--samples", "2", "--json", str(tmp_path / "e.json"), "--quiet"]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    for key in ("score_paper_units", "score_nats_per_value", "bound_paper_units", "bound_nats_per_value",
                "iw_nats_per_value", "unguided_nll_paper_units", "mse", "psnr"):
        assert key in res
    assert main(["eval", str(run), "--samples", "2", "--steps", "4", "--json", str(tmp_path / "e4.json"),
                 "--quiet"]) == 0
    assert len(json.loads((tmp_path / "e4.json").read_text())["per_step_unguided_nll_paper_units"]) == 5
    imgs = load_dataset("sklearn-digits", "test").x[:3].view(3, 8, 8).numpy()
    np.save(tmp_path / "in.npy", imgs)
    assert main(["impute", str(run), "--input", str(tmp_path / "in.npy"), "--mask", "square:3",
                 "--samples", "2", "--out", str(tmp_path / "grid.png"), "--save", str(tmp_path / "out.npy")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 1000
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (2, 3, 64)


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "nope", "--data", "sklearn-digits", "--mask", "mcar:0.5", "--run", "{tmp}/r"], "unknown model"),
    (["train", "--model", "gpsi-add", "--data", "sklearn-digits", "--mask", "mcar:0", "--run", "{tmp}/r"], "nothing missing"),
    (["train", "--model", "gpsi-add", "--data", "sklearn-digits", "--mask", "blob:3", "--run", "{tmp}/r"], "bad mask spec"),
    (["eval", "{tmp}"], "not a run folder"),
    (["impute", "{tmp}", "--input", "x.png", "--out", "y.png"], "not a run folder"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_impute_refuses_images_of_the_wrong_size(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "gpsi-add", "--data", "sklearn-digits", "--mask", "mcar:0.8", "--run", str(run),
                 "--updates", "2", "--quiet", "--set", "hidden=8", "--set", "z=2"]) == 0
    np.save(tmp_path / "big.npy", np.zeros((2, 10, 10), np.float32))
    assert main(["impute", str(run), "--input", str(tmp_path / "big.npy"), "--mask", "mcar:0.5",
                 "--out", str(tmp_path / "g.png")]) == 2
    assert "8x8" in capsys.readouterr().err


def test_cpu_clock_budget_counts_process_time(tmp_path, monkeypatch):
    """--clock cpu: the --minutes budget runs on the process's CPU time, not the wall clock."""
    import seqimpute.train as tr

    ticks = iter(range(0, 10**6, 30))  # every read of the CPU clock advances 30 "seconds"
    monkeypatch.setitem(tr.CLOCKS, "cpu", lambda: float(next(ticks)))
    out = train(tmp_path / "r", cfg(updates=None, minutes=2.0, clock="cpu", valid_every=1000), progress_bar=False)
    assert out["step"] == 4 and out["elapsed_s"] == 120.0  # 4 updates of 30 CPU-seconds fill 2 minutes
    with pytest.raises(SeqImputeError, match="clock must be 'wall' or 'cpu'"):
        cfg(clock="gpu").check()



def test_eval_json_records_the_training_it_rests_on(tmp_path):
    """`seqimpute eval --json` says what training the scores rest on: the checkpoint's updates, the images it had
    seen (updates x batch), the budget clock's seconds and the training process's CPU seconds, across a resume."""
    import time

    run = tmp_path / "run"
    base = ["train", "--model", "gpsi-add", "--data", "sklearn-digits", "--mask", "mcar:0.5", "--run", str(run),
            "--batch", "40", "--quiet", "--set", "hidden=16", "--set", "z=4", "--set", "steps=2",
            "--clock", "cpu", "--set", "valid_every=1000", "--set", "valid_size=20"]
    c0 = time.process_time()
    assert main(base + ["--updates", "6"]) == 0
    first = torch.load(run / "last.pt", weights_only=True)["cpu_s"]
    assert main(["train", "--run", str(run), "--updates", "10", "--quiet"]) == 0  # resumed: the CPU time adds up
    spent = time.process_time() - c0
    assert main(["eval", str(run), "--checkpoint", "last", "--samples", "1", "--n", "10", "--quiet",
                 "--json", str(tmp_path / "e.json")]) == 0
    t = json.loads((tmp_path / "e.json").read_text())["training"]
    assert t["updates"] == 10 and t["images_seen"] == 10 * 40 and t["clock"] == "cpu"
    assert 0 < first < t["cpu_s"] <= spent and 0 < t["training_s"] <= spent
    ck = torch.load(run / "last.pt", weights_only=True)
    ck["cpu_s"] = None  # a checkpoint from before CPU time was recorded: unknown, not invented
    del ck["images"]
    torch.save(ck, run / "last.pt")
    assert main(["eval", str(run), "--checkpoint", "last", "--samples", "1", "--n", "10", "--quiet",
                 "--json", str(tmp_path / "old.json")]) == 0
    t = json.loads((tmp_path / "old.json").read_text())["training"]
    assert t["cpu_s"] is None and t["images_seen"] == 400  # from the metrics logged at update 10


def _stops(run):
    return [(r["step"], r["by"]) for r in read_metrics(run) if r.get("event") == "stopped"]


def test_a_budget_given_on_resume_replaces_the_stored_ones_and_the_run_says_what_stopped_it(tmp_path, monkeypatch,
                                                                                           capsys):
    """README: a run started with --minutes, resumed with --updates, trains on to the updates (the spent minutes no
    longer apply); each call says which budget ended it, on stdout and in metrics.jsonl."""
    import seqimpute.train as tr

    ticks = iter(range(0, 10**6, 30))  # every read of the CPU clock advances 30 "seconds": 4 updates fill 2 minutes
    monkeypatch.setitem(tr.CLOCKS, "cpu", lambda: float(next(ticks)))
    run = str(tmp_path / "r")
    assert main(["train", "--model", "gpsi-add", "--data", "sklearn-digits", "--mask", "mcar:0.7", "--run", run,
                 "--minutes", "2", "--batch", "32", "--quiet", "--set", "hidden=8", "--set", "z=2",
                 "--set", "steps=2", "--clock", "cpu", "--set", "valid_size=20"]) == 0
    assert "stopped: 2 CPU-minutes spent (the --minutes budget)\n" in capsys.readouterr().out
    assert _stops(run) == [(4, "minutes")]

    assert main(["train", "--out", run, "--updates", "10", "--quiet"]) == 0  # 180 s more: past the 2 minutes
    assert "stopped: reached 10 updates (the --updates budget)\n" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 10 and _stops(run) == [(4, "minutes"), (10, "updates")]
    stored = TrainConfig.stored(tmp_path / "r")
    assert (stored.updates, stored.minutes) == (10, None)  # a later bare resume keeps these

    assert main(["train", "--run", run, "--minutes", "6", "--quiet"]) == 0  # 300 s counted: 2 more updates
    assert "stopped: 6 CPU-minutes spent (the --minutes budget)\n" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 12  # past the replaced 10-update budget


def test_reproduce_counts_a_run_complete_exactly_when_training_stops(tmp_path, monkeypatch):
    """A preset whose budget changed (minutes to updates): run_state says unfinished, training then reaches the
    preset's budget, not the stored one, and run_state agrees that it is done."""
    import seqimpute.train as tr
    from seqimpute.experiments.execute import _train_one, run_state
    from seqimpute.experiments.plan import RunPlan

    ticks = iter(range(0, 10**6, 30))
    monkeypatch.setitem(tr.CLOCKS, "cpu", lambda: float(next(ticks)))
    train(tmp_path / "r", cfg(updates=None, minutes=2.0, clock="cpu", valid_every=1000), progress_bar=False)
    plan = RunPlan("r", "main", "gpsi-add", tmp_path / "r", cfg(updates=10, clock="cpu", valid_every=1000),
                   "sklearn-digits")
    assert run_state(plan)["step"] == 4 and not plan.state["complete"]
    _train_one(plan.path, plan.cfg, None)
    assert run_state(plan)["step"] == 10 and plan.state["complete"]


# ------------------------------------------------------------------------------------------------- data with holes


def digits_with_holes(folder, share=0.2, seed=0):
    """scikit-learn's digits (8x8, /16) with a random ``share`` of the values NaN, as an .npz of the user's."""
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16).astype(np.float32).reshape(-1, 8, 8)
    x[np.random.default_rng(seed).random(x.shape) < share] = np.nan
    np.savez(folder / "holes.npz", x=x)
    return folder / "holes.npz"


def test_training_on_images_with_holes_runs_with_finite_losses(tmp_path):
    path = digits_with_holes(tmp_path)
    data = load_dataset(str(path), "train")
    assert data.image_shape == (8, 8) and 0.15 < float(torch.isnan(data.x).float().mean()) < 0.25
    out = train(tmp_path / "r", cfg(data=str(path), updates=6, valid_every=3, log_every=3), progress_bar=False)
    assert out["step"] == 6 and np.isfinite(out["best_valid_bound_paper_units"])
    logged = [r for r in read_metrics(tmp_path / "r") if "loss" in r]
    assert len(logged) == 2 and all(np.isfinite(r["loss"]) and r["skipped"] == 0 for r in logged)
    holes = data.x[:3].view(3, 8, 8).numpy()
    filled = seqimpute.impute(tmp_path / "r", holes)
    known = ~np.isnan(holes)
    assert np.array_equal(filled[known], holes[known]) and np.isfinite(filled).all()


def test_values_the_data_lack_neither_move_nor_enter_the_training_loss():
    """The trainer's objective (distributed.wrap) with ``known``: whatever numbers lie under the holes (NaN, 0 or
    anything), the loss is the same, and its NLL is the Bernoulli NLL (logits form) summed over the values that are
    missing from the input and known, written out here."""
    from seqimpute import distributed

    torch.manual_seed(0)
    model = build_model("gpsi-add", 64, None, SMALL)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 64, generator=g)
    known = torch.rand(6, 64, generator=g) > 0.2
    observed = (torch.rand(6, 64, generator=g) > 0.5) & known  # as the trainer builds it: the data's holes are missing
    objective = distributed.wrap(model, 1, torch.device("cpu"))
    copies = [x.masked_fill(~known, v) for v in (float("nan"), 0.0)] + [torch.where(known, x, 1 - x)]
    losses = []
    for copy in copies:
        loss, stats = objective(copy, observed, torch.Generator().manual_seed(2), known)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad()
        losses.append((float(loss.detach()), float(stats["nll"])))
    assert losses[0] == losses[1] == losses[2]
    # the test can fail: without `known`, the values under the holes are scored (and seen by the guide)
    assert float(objective(copies[2], observed, torch.Generator().manual_seed(2))[0].detach()) != losses[2][0]
    # the NLL term by hand, from the final canvas of the same rollout (same noise)
    r = model.rollout(copies[1], observed, guided=True, generator=torch.Generator().manual_seed(2))
    c, xs = r.final.tolist(), copies[1].tolist()
    total = 0.0
    for b in range(6):
        for d in range(64):
            if known[b, d] and not observed[b, d]:
                p = 1 / (1 + np.exp(-c[b][d]))
                total -= xs[b][d] * np.log(p) + (1 - xs[b][d]) * np.log(1 - p)
    assert losses[0][1] == pytest.approx(total / 6, rel=1e-5)


def test_evaluation_on_data_with_holes_scores_only_the_known_values():
    """Mean imputation (deterministic) on test images with NaN holes: the unguided NLL per value and the MSE are
    the epsilon-form Bernoulli NLL and squared error of the training mean, averaged over the values the mask hides
    and the data hold, computed here with NumPy."""
    from seqimpute.data.masks import mask_set
    from seqimpute.data.sources import Dataset

    model = build_model("mean", 64, None, {}).fit(load_dataset("sklearn-digits", "train"))
    test = load_dataset("sklearn-digits", "test")
    x = test.x.clone()
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) < 0.3] = float("nan")
    data = Dataset(x, test.image_shape, test.name, test.split)
    res = evaluate(model, data, "mcar:0.5")
    mask = mask_set("mcar:0.5", test.name, test.split, len(x), test.image_shape, 64).numpy()
    xn = x.numpy().astype(np.float64)
    scored = ~mask & ~np.isnan(xn)
    p = np.broadcast_to(model.mean.double().numpy(), xn.shape)
    nll = -(xn * np.log(p + 1e-6) + (1 - xn) * np.log(1 - p + 1e-6))
    assert res["unguided_nll_nats_per_value"] == pytest.approx(nll[scored].mean(), rel=1e-5)
    assert res["mse"] == pytest.approx(((p - xn) ** 2)[scored].mean(), rel=1e-5)
    assert res["imputed_fraction"] == pytest.approx(scored.mean())
    with pytest.raises(SeqImputeError, match="hides only values the data lack"):
        evaluate(model, data, "nan")
