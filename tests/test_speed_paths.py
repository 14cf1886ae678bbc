"""Issue 8's fast paths: the whole-step compiled graph and bf16 products give the plain float32 step's results
(to float rounding / bf16 tolerance), the trainer takes them as options, and the bench suite reports its keys."""

import json
import math

import pytest
import torch

from seqimpute.bench import linear_fit, run_bench, run_sweep
from seqimpute.models.policy import latent_step
from seqimpute.models.objectives import training_loss
from seqimpute.nn.noise import NoiseRecorder, NoiseTape
from seqimpute.loop import WholeStep
from seqimpute.models.registry import build_model, spec
from seqimpute.optim import Optimizer
from seqimpute.precision import matmul_precision
from seqimpute.train import TrainConfig, train

TINY = {
    "gpsi-add": {"hidden": 16, "z": 4, "steps": 3},
    "lstm-jump": {"hidden": 8, "write": 8, "z": 4, "mix": 3, "steps": 3},
    "draw-ext-add": {"enc": 8, "dec": 8, "write": 6, "z": 4, "mix": 3, "steps": 3},
}


def _one_step(name, compiled, bf16=False, seed=0):
    """Two updates (a compiled objective records the noise on the first and runs its graph on the second); the
    second's loss and gradients, the parameters after it, and the generator's state."""
    torch.manual_seed(seed)
    model = build_model(name, 16, "mnist", TINY[name])
    opt = Optimizer(model.parameters(), "budget", spec(name).family, model.l2)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 16, generator=g)
    observed = torch.zeros_like(x, dtype=torch.bool) if model.train_mask == "full" else torch.rand(6, 16, generator=g) > 0.6

    def eager(x, observed, generator):
        return training_loss(model, model.rollout(x, observed, guided=True, generator=generator), x, observed)

    objective = WholeStep(eager) if compiled else eager
    for i in range(2):
        with matmul_precision("bf16" if bf16 else "fp32"):
            loss, _ = objective(x, observed, g)
        opt.zero_grad()
        loss.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        opt.step(i, 0.5)
    return loss.detach(), grads, {k: v.clone() for k, v in model.state_dict().items()}, g.get_state()


@pytest.mark.parametrize("name", list(TINY))
def test_compiled_step_equals_the_plain_step(name):
    loss0, g0, p0, rng0 = _one_step(name, False)
    loss1, g1, p1, rng1 = _one_step(name, True)
    assert torch.equal(rng0, rng1)  # the noise is drawn eagerly: same random stream
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=1e-5)
    assert g0.keys() == g1.keys()
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-4, atol=1e-6, msg=k)
    for k in p0:
        torch.testing.assert_close(p1[k], p0[k], rtol=1e-5, atol=1e-6, msg=k)


def test_noise_tape_replays_what_the_recorder_drew():
    mu, lv = torch.randn(5, 4), torch.randn(5, 4)
    z0, *_ = latent_step(mu, lv, None, None, False, torch.Generator().manual_seed(1))
    rec = NoiseRecorder(torch.Generator().manual_seed(1))
    z1, *_ = latent_step(mu, lv, None, None, False, rec)
    assert rec.draws == [((5, 4), mu.device, torch.float32)]
    torch.testing.assert_close(z1, z0)
    eps = torch.randn((5, 4), generator=torch.Generator().manual_seed(1))
    tape = NoiseTape([eps])
    z2, kqp, kpq, lr = latent_step(mu, lv, None, None, False, tape)
    assert kqp is None and tape.i == 1
    torch.testing.assert_close(z2, z0)


@pytest.mark.parametrize("name", ["gpsi-add", "lstm-jump"])
def test_bf16_step_is_close_and_float32(name):
    loss0, g0, _, rng0 = _one_step(name, False)
    loss1, g1, p1, rng1 = _one_step(name, False, bf16=True)
    assert torch.equal(rng0, rng1)  # the latent noise stays float32: the same random stream
    assert loss1.dtype == torch.float32 and torch.isfinite(loss1)
    assert abs(float(loss1) - float(loss0)) <= 0.02 * abs(float(loss0))
    for k in g0:
        assert g1[k].dtype == torch.float32 and torch.isfinite(g1[k]).all(), k
    assert all(v.dtype == torch.float32 for v in p1.values())


def test_trainer_takes_compile_and_precision(tmp_path):
    base = dict(model="gpsi-add", data="sklearn-digits", mask="mcar:0.7", model_options={"hidden": 16, "z": 4, "steps": 2},
                updates=4, batch=32, valid_every=4, valid_size=50, ckpt_every=4, log_every=2)
    out = train(tmp_path / "a", TrainConfig(**base, compile=True, precision="bf16"), progress_bar=False)
    assert out["step"] == 4 and math.isfinite(out["best_valid_bound_paper_units"])
    from seqimpute.errors import SeqImputeError

    with pytest.raises(SeqImputeError, match="precision"):
        train(tmp_path / "b", TrainConfig(**base, precision="fp8"), progress_bar=False)


def test_trainer_compile_equals_plain(tmp_path):
    base = dict(model="gpsi-add", data="sklearn-digits", mask="mcar:0.7", model_options={"hidden": 16, "z": 4, "steps": 2},
                updates=3, batch=32, valid_every=100, valid_size=50, ckpt_every=100, log_every=100)
    base["precision"] = "fp32"  # float32 equality (a compiled graph rounds bf16 intermediates differently)
    train(tmp_path / "a", TrainConfig(**base), progress_bar=False)
    train(tmp_path / "b", TrainConfig(**base, compile=True), progress_bar=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6, msg=k)


def test_bench_suite_keys_and_baselines():
    res = run_bench(["gpsi-add", "mean"], steps=1, warmup=0, batch=8, overrides={"hidden": 16, "z": 4, "steps": 2})
    g, m = res["models"]
    for k in ("train_images_per_s", "step_gflops", "peak_share", "impute_images_per_s", "peak_mem_mb", "peak_mem_kind",
              "gemm_share", "of_gemm_ceiling"):
        assert k in g, k
    assert res["peak_gflops"] > 0 and g["peak_share"] > 0
    assert "train_images_per_s" not in m and m["impute_images_per_s"] > 0 and m["trainable"] is False
    json.dumps(res)


def test_bench_sweep_T_and_D():
    res = run_sweep("T", "gpsi-add", batch=8, steps=1, values=[1, 2, 4], overrides={"hidden": 16, "z": 4}, warmup=0)
    assert [r["value"] for r in res["models"]] == [1, 2, 4] and "linear_fit" in res
    assert [r["steps_T"] for r in res["models"]] == [1, 2, 4]
    res = run_sweep("D", "gpsi-add", batch=8, steps=1, values=[64, 100], overrides={"hidden": 16, "z": 4}, warmup=0)
    assert [r["dim"] for r in res["models"]] == [64, 100]
    fit = linear_fit([1, 2, 3], [2.0, 4.0, 6.0])
    assert abs(fit["slope_s_per_step"] - 2) < 1e-12 and fit["max_rel_deviation"] < 1e-12


def test_bench_cli_json(tmp_path, capsys):
    from seqimpute.cli import main

    out = tmp_path / "b.json"
    main(["bench", "--model", "gpsi-add", "--steps", "1", "--warmup", "0", "--batch", "8", "--set", "hidden=16",
          "--set", "z=4", "--set", "steps=2", "--json", str(out)])
    d = json.loads(out.read_text())
    for k in ("train_images_per_s", "peak_gflops", "step_gflops", "peak_share", "impute_images_per_s"):
        assert k in d, k


def _adam_updates(fused, clip=10.0, n=3):
    torch.manual_seed(0)
    model = build_model("gpsi-add", 16, "mnist", TINY["gpsi-add"])
    opt = Optimizer(model.parameters(), "budget", "gpsi", model.l2, clip=clip, fused=fused)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 16, generator=g)
    observed = torch.rand(6, 16, generator=g) > 0.6
    for i in range(n):
        loss, _ = training_loss(model, model.rollout(x, observed, generator=g), x, observed)
        opt.zero_grad()
        (loss * 50).backward()  # large gradients, so the clipping is active
        opt.step(i, 0.5)
    return opt, {k: v.clone() for k, v in model.state_dict().items()}


def test_fused_adam_equals_the_plain_adam():
    fused, p_fused = _adam_updates(True)
    plain, p_plain = _adam_updates(False)
    assert fused.adam.defaults["fused"] and not plain.adam.defaults.get("fused")
    for k in p_plain:
        torch.testing.assert_close(p_fused[k], p_plain[k], rtol=1e-5, atol=1e-6, msg=k)


def test_per_tensor_clipping_is_clip_grad_norm_on_each_tensor():
    a, b = torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.zeros(5))
    opt = Optimizer([a, b], "budget", "gpsi", 0.0, clip=10.0)
    a.grad, b.grad = torch.full((3, 4), 100.0), torch.full((5,), 0.1)  # norms 346.4 (clipped) and 0.22 (kept)
    opt.adam.step = lambda: None  # look at the clipped gradients, not the update
    opt.step(0, 0.0)
    ref = torch.nn.Parameter(torch.zeros(3, 4))
    ref.grad = torch.full((3, 4), 100.0)
    torch.nn.utils.clip_grad_norm_(ref, 10.0)
    torch.testing.assert_close(a.grad, ref.grad)
    assert torch.linalg.vector_norm(a.grad).item() == pytest.approx(10.0, rel=1e-5)
    torch.testing.assert_close(b.grad, torch.full((5,), 0.1))


def test_gemm_recorder_counts_what_the_flop_counter_counts(monkeypatch):
    """Plain path: the recorder's FLOPs are torch's FlopCounterMode's. SharedLinear path: the same products, with
    the in-place addmm_ (which FlopCounterMode misses) counted, so the same total."""
    from torch.utils.flop_counter import FlopCounterMode

    from seqimpute.bench import GemmRecorder, gemm_flops, replay_gemms
    from seqimpute.nn import shared

    for name in ("gpsi-add", "lstm-jump"):
        torch.manual_seed(0)
        model = build_model(name, 16, "mnist", TINY[name])
        x = torch.rand(6, 16)
        observed = torch.rand(6, 16) > 0.6

        def step():
            loss, _ = training_loss(model, model.rollout(x, observed, guided=True), x, observed)
            loss.backward()

        with GemmRecorder() as deferred:
            step()
        monkeypatch.setitem(shared.DEFER, "on", False)
        with FlopCounterMode(display=False) as fc:
            step()
        with GemmRecorder() as plain:
            step()
        monkeypatch.setitem(shared.DEFER, "on", True)
        assert plain.calls and gemm_flops(plain.calls) == fc.get_total_flops(), name
        assert gemm_flops(deferred.calls) == gemm_flops(plain.calls), name
        assert replay_gemms(deferred.calls, "cpu", repeats=2) > 0
