"""The precision setting (seqimpute.precision): bfloat16 products agree with float32 ones within bf16 tolerance for
every trainable model, keep the float32 parts float32, sum weight gradients in float32; ``auto`` follows the
device; a run resumed at another precision says so; training is deterministic at a fixed precision."""

import json
import math
import warnings

import pytest
import torch

from seqimpute import precision as prec
from torch.utils._python_dispatch import TorchDispatchMode

from seqimpute.errors import SeqImputeError
from seqimpute.models.objectives import training_loss
from seqimpute.models.registry import MODELS, build_model
from seqimpute.nn.shared import SharedLinear
from seqimpute.runs import read_config, read_metrics, write_config
from seqimpute.train import TrainConfig, train

BF16_EPS = 2.0**-8  # bfloat16 keeps 8 significant bits: rounding to nearest errs by at most 2^-8 relative

TINY = {
    "gpsi": {"hidden": 32, "z": 8, "steps": 3},
    "lstm": {"hidden": 16, "write": 16, "z": 8, "mix": 4, "steps": 3},
    "vae": {"hidden": 32, "z": 8, "steps": 2},
    "draw": {"enc": 16, "dec": 16, "write": 8, "z": 8, "steps": 3},
}
TRAINABLE = [n for n, s in MODELS.items() if getattr(s.cls, "trainable", True)]


def _tiny(name: str) -> dict:
    opts = dict(TINY["vae" if name == "vae-imp" else name.split("-")[0]])
    if name.startswith("draw-ext"):
        opts["mix"] = 4
    return opts


class ProductDtypes(TorchDispatchMode):
    """The dtypes of the operands of every matrix product run inside it (under inference mode torch dispatches
    ``linear`` whole, so it is listed too)."""

    OPS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.addmm_.default,
           torch.ops.aten.linear.default}

    def __init__(self):
        super().__init__()
        self.dtypes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.OPS:
            self.dtypes |= {a.dtype for a in args if isinstance(a, torch.Tensor)}
        return func(*args, **(kwargs or {}))


def _loss_and_grads(model, x, observed, precision):
    with ProductDtypes() as rec:
        with prec.matmul_precision(precision):
            r = model.rollout(x, observed, guided=True, generator=torch.Generator().manual_seed(2))
            loss, _ = training_loss(model, r, x, observed)
        model.zero_grad()
        loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, r, rec.dtypes


def test_trainable_models_are_all_covered():
    assert {"gpsi-add", "gpsi-jump", "lstm-add", "lstm-jump", "vae-imp", "draw", "draw-ext-add",
            "draw-ext-jump"} <= set(TRAINABLE)


@pytest.mark.parametrize("name", TRAINABLE)
def test_bf16_loss_and_gradients_agree_with_fp32(name):
    torch.manual_seed(0)
    model = build_model(name, 64, None, _tiny(name))
    with torch.no_grad():  # move off the init (the LSTMs' N(0, 0.01) weights write almost nothing at first)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 64, generator=g)
    observed = torch.zeros_like(x, dtype=torch.bool) if model.train_mask == "full" else torch.rand(64, 64, generator=g) > 0.5
    loss32, g32, r32, dt32 = _loss_and_grads(model, x, observed, "fp32")
    loss16, g16, r16, dt16 = _loss_and_grads(model, x, observed, "bf16")
    assert dt32 == {torch.float32} and dt16 == {torch.bfloat16}  # every product of the step, forward and backward
    # what stays float32: the canvas, the KL terms, the loss, every gradient
    assert r16.final.dtype == torch.float32 and r16.kl_qp.dtype == torch.float32 and loss16.dtype == torch.float32
    assert g16.keys() == g32.keys()
    assert abs(float(loss16) - float(loss32)) <= 4 * BF16_EPS * abs(float(loss32))
    for k in g32:
        assert g16[k].dtype == torch.float32, k
        if g32[k].norm() == 0:
            continue
        rel = float((g16[k] - g32[k]).norm() / g32[k].norm())
        # rounding at every layer of the backward pass compounds: a few percent at this depth and batch
        assert rel < 25 * BF16_EPS, (k, rel)


@pytest.mark.parametrize("steps", [1, 16])
def test_shared_weight_gradient_is_summed_in_float32(steps):
    """dW = sum_t dy_t^T x_t over T steps with bf16 operands: the result is the exact sum (float64, from the same
    bf16 values) rounded ONCE to bf16 precision, not a running bf16 sum rounded at every step."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 40, generator=g, requires_grad=True)
    b = torch.randn(24, generator=g, requires_grad=True)
    xs = [torch.randn(50, 40, generator=g).bfloat16() for _ in range(steps)]
    dys = [torch.randn(50, 24, generator=g).bfloat16() for _ in range(steps)]
    with prec.matmul_precision("bf16"):
        layer = SharedLinear(w, b)
        assert layer.deferred and layer.weight.dtype == torch.bfloat16
        ys = [layer(x) for x in xs]
    assert all(y.dtype == torch.bfloat16 for y in ys)
    # the loss sum_t <y_t, dy_t> has dL/dy_t = dy_t exactly
    sum(torch.sum(y.float() * dy.float()) for y, dy in zip(ys, dys)).backward()
    ref_w = sum(dy.double().t() @ x.double() for x, dy in zip(xs, dys))
    ref_b = sum(dy.double().sum(0) for dy in dys)
    assert w.grad.dtype == torch.float32 and b.grad.dtype == torch.float32
    assert ((w.grad.double() - ref_w).abs() <= BF16_EPS * ref_w.abs() + 1e-6).all()
    assert ((b.grad.double() - ref_b).abs() <= 1e-5 * (1 + ref_b.abs())).all()  # a float32 sum


def test_auto_follows_the_device(monkeypatch):
    monkeypatch.setattr(prec, "_cpu_fast_bf16", lambda: False)
    assert prec.resolve("auto", "cpu") == "fp32"
    prec.warn_emulated_bf16.cache_clear()
    with pytest.warns(RuntimeWarning, match="without bf16 matrix instructions.*emulated") as caught:
        assert prec.resolve("bf16", "cpu") == "bf16" and prec.resolve("fp32", "cpu") == "fp32"
        assert prec.resolve("bf16", "cpu") == "bf16"
    assert len(caught) == 1  # once per process, however often bf16 is resolved
    monkeypatch.setattr(prec, "_cpu_fast_bf16", lambda: True)
    prec.warn_emulated_bf16.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a CPU with bf16 instructions: no warning
        assert prec.resolve("auto", "cpu") == "bf16" and prec.resolve("bf16", "cpu") == "bf16"
    with pytest.raises(SeqImputeError, match="precision must be one of auto, bf16, fp32"):
        prec.resolve("fp16", "cpu")


def test_cpu_info_names_the_generation_and_its_bf16_instructions(tmp_path, monkeypatch):
    """The model name alone can hide the generation (two 'AMD EPYC' hosts here differ 2x in bf16 throughput):
    benchmark files record family, model and the bf16 instructions, read from the first processor's block."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                    "model name\t: AMD EPYC\nflags\t\t: fpu avx512f avx512_bf16 sse\n\n"
                    "processor\t: 1\ncpu family\t: 99\nmodel name\t: other\nflags\t\t: amx_bf16\n")
    assert prec.cpu_info(str(info)) == {"name": "AMD EPYC", "family": "26", "model": "2", "bf16": ["avx512_bf16"]}
    assert prec.cpu_info(str(tmp_path / "missing")) == {"name": "", "family": "", "model": "", "bf16": []}
    monkeypatch.setattr(prec, "cpu_info", lambda: {"name": "AMD EPYC", "family": "26", "model": "2",
                                                   "bf16": ["avx512_bf16"]})
    assert prec.cpu_name() == "AMD EPYC (family 26, model 2; avx512_bf16)"
    monkeypatch.setattr(prec, "cpu_info", lambda: {"name": "", "family": "", "model": "", "bf16": []})
    assert prec.cpu_name() == "unknown CPU (family ?, model ?; no bf16 matrix instructions)"


def test_products_run_in_float32_outside_a_bf16_block():
    w = torch.randn(3, 4)
    with prec.matmul_precision("bf16"):
        assert prec.linear(torch.randn(2, 4), w).dtype == torch.bfloat16
        with prec.matmul_precision("fp32"):
            assert prec.linear(torch.randn(2, 4), w).dtype == torch.float32
        assert prec.linear(torch.randn(2, 4), w).dtype == torch.bfloat16  # the outer block again after the inner
    assert prec.linear(torch.randn(2, 4), w).dtype == torch.float32


BASE = dict(model="gpsi-add", data="sklearn-digits", mask="mcar:0.7", model_options={"hidden": 16, "z": 4, "steps": 2},
            updates=4, batch=32, valid_every=4, valid_size=50, ckpt_every=2, log_every=2)


def test_trainer_records_the_resolved_precision(tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "_cpu_fast_bf16", lambda: False)  # a CPU without fast bf16
    out = train(tmp_path / "a", TrainConfig(**BASE), progress_bar=False)
    assert out["precision"] == "fp32" and read_config(tmp_path / "a")["runtime"]["precision"] == "fp32"
    assert out["images_per_s"] > 0
    monkeypatch.setattr(prec, "_cpu_fast_bf16", lambda: True)
    out = train(tmp_path / "b", TrainConfig(**BASE), progress_bar=False)
    assert out["precision"] == "bf16" and read_config(tmp_path / "b")["runtime"]["precision"] == "bf16"
    with pytest.raises(SeqImputeError, match="precision must be one of"):
        train(tmp_path / "c", TrainConfig(**BASE, precision="fp8"), progress_bar=False)


def test_resume_at_another_precision_is_logged(tmp_path):
    run = tmp_path / "r"
    train(run, TrainConfig(**BASE, precision="bf16"), progress_bar=False, session_updates=2)
    out = train(run, TrainConfig(**BASE, precision="fp32"), progress_bar=False, quiet=True)
    assert out["step"] == 4 and out["precision"] == "fp32"
    events = [m for m in read_metrics(run) if m.get("event") == "precision_changed"]
    assert events == [{"step": 2, "event": "precision_changed", "from": "bf16", "to": "fp32"}]
    cfg = read_config(run)
    assert cfg["runtime"]["precision"] == "fp32" and cfg["train"]["precision"] == "fp32"


def test_cli_resume_changes_runtime_settings_only(tmp_path, capsys):
    from seqimpute.cli import main

    run = tmp_path / "r"
    train(run, TrainConfig(**BASE, precision="bf16"), progress_bar=False, session_updates=2)
    assert main(["train", "--run", str(run), "--set", "lr=0.01", "--quiet"]) == 2
    assert "keeps the settings it started with (lr differ)" in capsys.readouterr().err
    assert main(["train", "--run", str(run), "--set", "hidden=8", "--quiet"]) == 2  # a model option
    assert "(hidden differ)" in capsys.readouterr().err
    # the starting command again (same settings), with a runtime setting changed
    assert main(["train", "--run", str(run), "--set", "hidden=16", "--set", "lr=0.001", "--precision", "fp32",
                 "--quiet"]) == 0
    assert "fp32 products" in capsys.readouterr().out
    assert read_config(run)["runtime"]["precision"] == "fp32"


@pytest.mark.parametrize("amp, expected", [("bf16", "bf16"), ("none", "fp32")])
def test_runs_written_with_amp_still_load(tmp_path, amp, expected):
    cfg = TrainConfig(**BASE)
    d = {k: v for k, v in cfg.__dict__.items() if k != "precision"}
    write_config(tmp_path, {"train": {**d, "amp": amp}})
    assert TrainConfig.stored(tmp_path).precision == expected


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_training_is_deterministic_at_a_fixed_precision(tmp_path, precision):
    a = train(tmp_path / "a", TrainConfig(**BASE, precision=precision), progress_bar=False)
    b = train(tmp_path / "b", TrainConfig(**BASE, precision=precision), progress_bar=False)
    assert a["best_valid_bound_paper_units"] == b["best_valid_bound_paper_units"]
    pa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    pb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    losses = [[m["loss"] for m in read_metrics(r) if "loss" in m] for r in (tmp_path / "a", tmp_path / "b")]
    assert losses[0] == losses[1] and all(math.isfinite(v) for v in losses[0])


def test_bench_reports_both_peaks_where_bf16_is_fast(monkeypatch):
    import seqimpute.bench as bench

    monkeypatch.setattr(bench, "PEAK_N", 256)  # the peaks' size does not matter here; small keeps CI fast anywhere
    monkeypatch.setattr(bench, "fast_bf16", lambda device: True)
    res = bench.run_bench(["gpsi-add"], steps=1, warmup=0, batch=8, overrides={"hidden": 16, "z": 4, "steps": 2},
                          precision="bf16")
    r = res["models"][0]
    assert res["bf16_peak_gflops"] > 0 and r["precision"] == "bf16"
    assert res["device_name"] == prec.cpu_name()
    assert r["bf16_peak_share"] == pytest.approx(r["step_gflops"] / res["bf16_peak_gflops"])
    assert r["peak_share"] == pytest.approx(r["step_gflops"] / res["peak_gflops"])
    json.dumps(res)


def test_bench_skips_the_bf16_peak_where_bf16_is_emulated(monkeypatch):
    """A CPU without bf16 instructions emulates bf16 products ~50x slower: the bench must not time that peak."""
    import seqimpute.bench as bench

    timed = []

    def peak(device="cpu", n=2048, repeats=7, dtype=torch.float32, clock=None):
        timed.append(dtype)
        return 100.0, [100.0] * repeats

    monkeypatch.setattr(bench, "matmul_peak_gflops", peak)
    monkeypatch.setattr(bench, "fast_bf16", lambda device: False)
    res = bench.run_bench(["gpsi-add"], steps=1, warmup=0, batch=8, overrides={"hidden": 16, "z": 4, "steps": 2},
                          precision="fp32")
    assert timed == [torch.float32, torch.float32]  # before and after the models, float32 only
    assert res["bf16_peak_gflops"] is None and res["bf16_peak_samples"] == [] and "not timed" in res["bf16_peak_note"]
    r = res["models"][0]
    assert r["bf16_peak_share"] is None and r["peak_share"] == pytest.approx(r["step_gflops"] / 100.0)
    assert "not timed (no fast bf16 products)" in bench.format_table(res)
    json.dumps(res)


def test_evaluation_and_imputation_follow_the_precision(monkeypatch):
    from seqimpute import load_dataset
    from seqimpute.evaluate import evaluate
    from seqimpute.sampling import sample_trajectories

    data = load_dataset("sklearn-digits", "valid")
    torch.manual_seed(0)
    model = build_model("gpsi-add", data.dim, None, {"hidden": 32, "z": 8, "steps": 3})
    scores = {}
    for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        with ProductDtypes() as rec:
            scores[p] = evaluate(model, data, "mcar:0.7", samples=2, n=64, precision=p)["score_paper_units"]
        assert rec.dtypes == {dtype}
    # the paper-unit score (NLL + KL, float32 sums) moves by bf16 rounding of the products only
    assert abs(scores["bf16"] - scores["fp32"]) <= 2e-3 * scores["fp32"]
    monkeypatch.setattr(prec, "_cpu_fast_bf16", lambda: False)  # auto on a device without fast bf16: float32
    x = data.x[:4]
    with ProductDtypes() as rec:
        evaluate(model, data, "mcar:0.7", samples=1, n=8)
        traj = sample_trajectories(model, x, torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) > 0.5)
    assert rec.dtypes == {torch.float32} and traj.dtype == torch.float32
    monkeypatch.setattr(prec, "_cpu_fast_bf16", lambda: True)  # and bf16 where it is fast
    with ProductDtypes() as rec:
        sample_trajectories(model, x, torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) > 0.5)
    assert rec.dtypes == {torch.bfloat16}


def test_sequential_imputer_takes_the_precision():
    import numpy as np

    from seqimpute import SequentialImputer

    rng = np.random.default_rng(0)
    X = rng.random((64, 6))
    X[rng.random(X.shape) < 0.3] = np.nan
    kw = dict(hidden=16, latent=4, steps=2, max_updates=3, max_minutes=None, batch_size=32, n_rollouts=2,
              random_state=0)
    for p, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        with ProductDtypes() as rec:
            out = SequentialImputer(precision=p, **kw).fit(X).transform(X)
        # the policy's products at the precision asked for; the Gaussian start's EM solves run in float64
        assert rec.dtypes - {torch.float64} == {dtype} and out.dtype == X.dtype and not np.isnan(out).any()
    with pytest.raises(SeqImputeError, match="precision='fp16'; choose one of auto, bf16, fp32"):
        SequentialImputer(precision="fp16", **kw).fit(X)


def test_sequential_imputer_auto_takes_fp32_for_narrow_policies_on_a_cpu(monkeypatch):
    """On a CPU with fast bf16, "auto" still runs a policy narrower than 256 hidden units in fp32 (bf16's casts cost
    more than they save on such small products), and a wider one in bf16."""
    import numpy as np

    from seqimpute import SequentialImputer

    monkeypatch.setattr(prec, "_cpu_fast_bf16", lambda: True)
    rng = np.random.default_rng(0)
    X = rng.random((40, 4))
    X[rng.random(X.shape) < 0.3] = np.nan
    kw = dict(latent=2, steps=1, max_updates=2, early_stopping=False, batch_size=16, n_rollouts=1, random_state=0)
    for hidden, dtype in ((255, torch.float32), (256, torch.bfloat16)):
        with ProductDtypes() as rec:
            SequentialImputer(hidden=hidden, **kw).fit(X).transform(X)
        assert rec.dtypes - {torch.float64} == {dtype}, hidden  # float64: the Gaussian start's solves
