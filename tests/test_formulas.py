"""The formulas behind every published number, checked by value on the path that produces them.

Each expected value is computed here independently, in a direct Python loop over images, samples and pixels (or in
closed form, or by quadrature), from what the model drew: the evaluator's paper units on partial masks, its
importance-weighted NLL against an exact marginal likelihood, the training loss of `seqimpute train` and of
`SequentialImputer`, the optimiser's step with its L2 penalty, and `SequentialImputer.score`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from seqimpute import SequentialImputer, load_dataset
from seqimpute import distributed
from seqimpute.data.sources import Dataset
from seqimpute.evaluate import evaluate
from seqimpute.models import draw, gpsi, lstm, vae
from seqimpute.models.policy import Policy, Rollout, latent_step
from seqimpute.models.registry import build_model
from seqimpute.optim import Optimizer

EPS = 1e-6  # the paper's epsilon inside log(p + eps) (docs/PAPER.md §3.5, likelihood and KL)


# ---------------------------------------------------------------------------------------------- hand formulas


def sigmoid(c: float) -> float:
    return 1 / (1 + math.exp(-c)) if c >= 0 else math.exp(c) / (1 + math.exp(c))


def nll_paper(x: float, c: float) -> float:
    """The reported Bernoulli NLL of one value x under the logit c, epsilon form."""
    p = sigmoid(c)
    return -(x * math.log(p + EPS) + (1 - x) * math.log(1 - p + EPS))


def nll_logits(x: float, c: float) -> float:
    """The training Bernoulli NLL of one value (cross-entropy from the logit, no epsilon)."""
    return max(c, 0.0) - x * c + math.log1p(math.exp(-abs(c)))


def kl(mu1, lv1, mu2, lv2) -> float:
    """KL(N(mu1, e^lv1) || N(mu2, e^lv2)) summed over the latent dimensions (lists of floats)."""
    return sum(0.5 * (b - a + (math.exp(a) + (m - n) ** 2) / math.exp(b) - 1) for m, a, n, b in zip(mu1, lv1, mu2, lv2))


def log_normal(z: float, mu: float, lv: float) -> float:
    return -0.5 * (math.log(2 * math.pi) + lv + (z - mu) ** 2 / math.exp(lv))


def rows(t: torch.Tensor) -> list[list]:
    return t.detach().double().cpu().tolist()


# ---------------------------------------------------------------------------------------------- a toy policy


class LinearGaussian(Policy):
    """One step with a 1-D latent: p(z) = N(mu_p, e^lv_p), guide q(z) = N(mu_q, e^lv_q) (deliberately not the
    posterior), canvas c_1 = a z + b. So p(x_missing | x_known) = int N(z; mu_p, e^lv_p) prod_d Bern(x_d; sigmoid(a_d
    z + b_d)) dz, a 1-D integral computed by quadrature. Every guided rollout is recorded (inputs and the z drawn)."""

    name = "linear-gaussian"
    steps = 1

    def __init__(self, dim: int, mu_p=0.0, lv_p=0.0, mu_q=0.3, lv_q=0.4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.a = (0.8 * torch.randn(dim, generator=g, dtype=torch.float64)).tolist()
        self.b = (0.5 * torch.randn(dim, generator=g, dtype=torch.float64)).tolist()
        self.mu_p, self.lv_p, self.mu_q, self.lv_q = mu_p, lv_p, mu_q, lv_q
        self.anchor = nn.Parameter(torch.zeros(1))  # tells the evaluator the device
        self.calls = []  # (x, observed, z, guided) per rollout

    def rollout(self, x, observed, guided=True, steps=None, generator=None) -> Rollout:
        B = x.shape[0]
        full = lambda v: torch.full((B, 1), float(v), dtype=torch.float64)
        z, kqp, kpq, lr = latent_step(full(self.mu_p), full(self.lv_p), full(self.mu_q), full(self.lv_q), guided,
                                      generator)
        a, b = torch.tensor(self.a, dtype=torch.float64), torch.tensor(self.b, dtype=torch.float64)
        self.calls.append((x.clone(), observed.clone(), z[:, 0].clone(), guided))
        c0 = torch.zeros(B, self.dim, dtype=torch.float64)
        return Rollout.assemble([c0, z * a + b], [kqp], [kpq], lr, guided)

    def log_w(self, x: list, observed: list, z: float) -> float:
        """log p(z) - log q(z) + log p(x_missing | z): the importance weight of one guided sample, by hand."""
        nll = sum(nll_paper(x[d], self.a[d] * z + self.b[d]) for d in range(self.dim) if not observed[d])
        return log_normal(z, self.mu_p, self.lv_p) - log_normal(z, self.mu_q, self.lv_q) - nll

    def exact_nll(self, x: list, observed: list) -> float:
        """-log p(x_missing | x_known) by the trapezoid rule on a fine grid over +-12 prior standard deviations."""
        sd = math.exp(0.5 * self.lv_p)
        z = np.linspace(self.mu_p - 12 * sd, self.mu_p + 12 * sd, 40001)
        log_f = -0.5 * (math.log(2 * math.pi) + self.lv_p + (z - self.mu_p) ** 2 / math.exp(self.lv_p))
        for d in range(self.dim):
            if not observed[d]:
                p = 1 / (1 + np.exp(-(self.a[d] * z + self.b[d])))
                log_f = log_f + x[d] * np.log(p + EPS) + (1 - x[d]) * np.log(1 - p + EPS)
        m = log_f.max()
        return -(m + math.log(np.trapezoid(np.exp(log_f - m), z)))


def toy_data(n=6, side=6, seed=0) -> Dataset:
    """Binary side x side images, all different."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, side * side, generator=g) < 0.5).float()
    assert len({tuple(r) for r in x.tolist()}) == n
    return Dataset(x, (side, side), "toy-a", "test")


def by_image(calls, data: Dataset, guided: bool) -> dict[int, list]:
    """The recorded rollout rows grouped by the image they score: {image index: [(x, observed, z), ...]}."""
    index = {tuple(r): i for i, r in enumerate(data.x.tolist())}
    out: dict[int, list] = {}
    for x, obs, z, g in calls:
        if g != guided:
            continue
        for xr, orow, zr in zip(x.tolist(), obs.tolist(), z.tolist()):
            out.setdefault(index[tuple(xr)], []).append((xr, orow, zr))
    return out


def logsumexp(v: list[float]) -> float:
    m = max(v)
    return m + math.log(sum(math.exp(u - m) for u in v))


# ---------------------------------------------------------------------------------------------- 1. paper units


@pytest.mark.parametrize("mask", ["mcar:0.5", "square:2"])
def test_evaluator_scores_equal_a_direct_loop_on_partial_masks(mask):
    """Bound, importance-weighted NLL and unguided NLL per image, their totals, and the conversion to paper units,
    D x total nats / total imputed values (not / known values), all recomputed pixel by pixel."""
    data = toy_data()
    N, D, K = len(data), data.dim, 7
    model = LinearGaussian(D)
    res = evaluate(model, data, mask, samples=K, unguided_samples=3, batch=4, seed=3)

    guided, unguided = by_image(model.calls, data, True), by_image(model.calls, data, False)
    assert sorted(guided) == sorted(unguided) == list(range(N))
    kl_qp = kl([model.mu_q], [model.lv_q], [model.mu_p], [model.lv_p])  # closed form, one 1-D step
    total = {"bound": 0.0, "iw": 0.0, "unguided": 0.0, "sq_err": 0.0}
    n_missing = 0
    for i in range(N):
        samples = guided[i]
        assert len(samples) == K and len(unguided[i]) == 3
        x, obs, _ = samples[0]
        missing = [d for d in range(D) if not obs[d]]
        assert all(o == obs for _, o, _ in samples + unguided[i])  # one fixed mask per image
        n_missing += len(missing)
        bounds, log_ws = [], []
        for _, _, z in samples:
            nll = sum(nll_paper(x[d], model.a[d] * z + model.b[d]) for d in missing)
            bounds.append(nll + kl_qp)
            log_ws.append(model.log_w(x, obs, z))
        total["bound"] += sum(bounds) / K  # the per-image bound: the mean over the K guide samples
        total["iw"] += -(logsumexp(log_ws) - math.log(K))  # -log (1/K) sum_k w_k
        zs = [z for _, _, z in unguided[i]]
        total["unguided"] += sum(sum(nll_paper(x[d], model.a[d] * z + model.b[d]) for d in missing) for z in zs) / 3
        for d in missing:
            guess = sum(sigmoid(model.a[d] * z + model.b[d]) for z in zs) / 3
            total["sq_err"] += (guess - x[d]) ** 2
    if mask == "square:2":
        assert n_missing == 4 * N  # one 2x2 hole per image
    assert 0 < n_missing < N * D and n_missing != N * D - n_missing  # a factor D/|U| that differs from D/|K|

    assert res["imputed_fraction"] == pytest.approx(n_missing / (N * D), rel=1e-12)
    assert res["paper_unit_factor"] == pytest.approx(N * D / n_missing, rel=1e-12)
    for key in ("bound", "iw", "unguided"):
        paper = D * total[key] / n_missing
        name = "unguided_nll" if key == "unguided" else key
        assert res[f"{name}_paper_units"] == pytest.approx(paper, rel=1e-9), key
        assert res[f"{name}_nats_per_value"] == pytest.approx(total[key] / n_missing, rel=1e-9), key
    assert res["bound_nats_per_image"] == pytest.approx(total["bound"] / N, rel=1e-9)
    assert res["iw_nats_per_image"] == pytest.approx(total["iw"] / N, rel=1e-9)
    assert res["kl_nats_per_image"] == pytest.approx(kl_qp, rel=1e-9)
    assert res["score_paper_units"] == res["bound_paper_units"]
    assert res["mse"] == pytest.approx(total["sq_err"] / n_missing, rel=1e-6)


@pytest.mark.parametrize("mask", ["mcar:0.5", "square:2"])
def test_evaluator_bound_of_a_trained_model_equals_a_direct_loop(mask):
    """The same sums for a real policy (a tiny GPSI-add on digits), from the canvases and KL terms it returned."""
    data = load_dataset("sklearn-digits", "test")
    torch.manual_seed(0)
    model = build_model("gpsi-add", data.dim, None, {"hidden": 16, "z": 3, "steps": 2})
    recorded = []
    real = model.rollout

    def rollout(x, observed, guided=True, steps=None, generator=None):
        r = real(x, observed, guided=guided, steps=steps, generator=generator)
        recorded.append((x, observed, r))
        return r

    model.rollout = rollout
    N, D, K = 5, data.dim, 4
    res = evaluate(model, data, mask, samples=K, n=N, seed=1)
    index = {tuple(r): i for i, r in enumerate(data.x[:N].tolist())}
    per_image: dict[int, list] = {}
    missing_of: dict[int, list] = {}
    for x, obs, r in recorded:
        if not r.guided:
            continue
        for xr, orow, c, kls in zip(rows(x), obs.tolist(), rows(r.final), rows(r.kl_qp.T)):
            i = index[tuple(xr)]
            missing_of[i] = [d for d in range(D) if not orow[d]]
            per_image.setdefault(i, []).append(sum(nll_paper(xr[d], c[d]) for d in missing_of[i]) + sum(kls))
    assert sorted(per_image) == list(range(N)) and all(len(v) == K for v in per_image.values())
    total = sum(sum(v) / K for v in per_image.values())
    n_missing = sum(len(m) for m in missing_of.values())
    if mask == "square:2":
        assert n_missing == 4 * N
    assert res["bound_nats_per_image"] == pytest.approx(total / N, rel=1e-5)
    assert res["bound_paper_units"] == pytest.approx(D * total / n_missing, rel=1e-5)


# ---------------------------------------------------------------------------------------------- 2. IW NLL


def test_importance_weighted_nll_approaches_the_exact_marginal_likelihood():
    """-log p(x_missing | x_known) is known by quadrature for the toy policy. The bound lies above it by
    KL(q || posterior) (about 2 nats per image here, whatever K); the K-sample estimate closes that gap as K grows,
    to within 0.01 nats per image at K=4000. A dropped log K (8.3 nats at K=4000) or a sign error cannot pass."""
    data = toy_data(n=4)
    model = LinearGaussian(data.dim)
    exact, errors, gaps = None, {}, {}
    for K in (30, 4000):
        model.calls.clear()
        res = evaluate(model, data, "mcar:0.5", samples=K, unguided_samples=1, seed=6)
        if exact is None:
            masks = {i: s[0][1] for i, s in by_image(model.calls, data, True).items()}
            exact = sum(model.exact_nll(data.x[i].tolist(), masks[i]) for i in range(len(data))) / len(data)
        errors[K] = res["iw_nats_per_image"] - exact
        gaps[K] = res["bound_nats_per_image"] - exact
    assert min(gaps.values()) > 1.0
    assert abs(errors[4000]) < 0.01
    assert abs(errors[4000]) < abs(errors[30]) < 0.5



@pytest.mark.parametrize("name", ["gpsi-add", "gpsi-jump", "lstm-add", "lstm-jump"])
def test_log_ratio_is_minus_the_kl_in_expectation(name):
    """E_q[log p(z) - log q(z)] = -sum_t KL(q||p): a policy's sampled importance log-ratios against its closed-form
    KL rows (what the bound uses), over 4000 rollouts of one image with a perturbed model (q far from p)."""
    opts = {"hidden": 12, "z": 3, "steps": 3, **({"write": 6, "mix": 2} if name.startswith("lstm") else {})}
    torch.manual_seed(0)
    m = build_model(name, 16, None, opts)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = (torch.rand(1, 16, generator=torch.Generator().manual_seed(1)) < 0.4).float().repeat(4000, 1)
    obs = (torch.arange(16) % 3 == 0).repeat(4000, 1)
    with torch.no_grad():
        r = m.rollout(x, obs, guided=True, generator=torch.Generator().manual_seed(0))
    kl = r.kl_qp.sum(0)
    assert float(kl.mean()) > 0.5  # a real gap between q and p
    gap = r.log_ratio + kl
    assert abs(float(gap.mean())) < 4 * float(gap.std()) / 4000 ** 0.5 + 1e-4


# ---------------------------------------------------------------------------------------------- 3. training loss




def record_latent_steps(monkeypatch) -> list:
    """Every guided latent step's Gaussians (mu_p, lv_p, mu_q, lv_q), as lists, in the order the models draw."""
    steps = []

    def recording(mu_p, lv_p, mu_q, lv_q, guided, generator):
        if guided:
            steps.append(tuple(rows(t) for t in (mu_p, lv_p, mu_q, lv_q)))
        return latent_step(mu_p, lv_p, mu_q, lv_q, guided, generator)

    for module in (gpsi, lstm, draw, vae):
        monkeypatch.setattr(module, "latent_step", recording)
    return steps


def record_rollouts(model) -> list:
    """Every rollout the model returns, with its inputs: [(x, observed, rollout)]."""
    out, real = [], model.rollout

    def rollout(x, observed, *args, **kwargs):
        r = real(x, observed, *args, **kwargs)
        out.append((x, observed, r))
        return r

    model.rollout = rollout
    return out


def perturb(model, seed=0, scale=0.3):
    """Every parameter moved by seeded noise: away from the initialisation, where the log-variance heads are zero,
    so that p and q have equal variances and KL(q||p) = KL(p||q) (a swap of the two weights would go unseen)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def kl_terms(steps: list, b: int) -> tuple[float, float]:
    """sum over steps of KL(q||p) and of KL(p||q) for example b, from the recorded Gaussians."""
    qp = sum(kl(mq[b], lq[b], mp[b], lp[b]) for mp, lp, mq, lq in steps)
    pq = sum(kl(mp[b], lp[b], mq[b], lq[b]) for mp, lp, mq, lq in steps)
    return qp, pq


@pytest.mark.parametrize("name", ["gpsi-add", "gpsi-jump", "lstm-add", "lstm-jump", "draw", "draw-ext-add",
                                  "draw-ext-jump", "vae-imp"])
def test_training_loss_is_nll_plus_weighted_kls(name, monkeypatch, tiny_options):
    """The loss `seqimpute train` minimises (its objective, distributed.wrap) equals, for fixed noise,
    mean_b [NLL(missing | c_T) + 0.9 sum_t KL(q_t||p_t) + 0.1 sum_t KL(p_t||q_t)], the KLs written out here from the
    Gaussians each step drew from (the VAE's ELBO: NLL + KL(q || N(0,I)), weights 1 and 0; docs/PAPER.md §3.5)."""
    w_q, w_p = (1.0, 0.0) if name == "vae-imp" else (0.9, 0.1)
    steps = record_latent_steps(monkeypatch)
    D, B = 16, 5
    torch.manual_seed(0)
    model = perturb(build_model(name, D, None, tiny_options(name)).double())  # float64: matches the loop to 1e-10
    recorded = record_rollouts(model)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, D, generator=g, dtype=torch.float64)
    mask = getattr(model, "train_mask", None) or "mcar:0.6"
    observed = torch.rand(B, D, generator=g) >= (1.0 if mask == "full" else 0.6)
    loss, stats = distributed.wrap(model, 1, torch.device("cpu"))(x, observed, torch.Generator().manual_seed(2))

    (_, _, r), = recorded
    assert len(steps) == r.kl_qp.shape[0] >= 1
    final, xs, obs = rows(r.final), rows(x), observed.tolist()
    expected, nlls, asymmetry = 0.0, [], 0.0
    for b in range(B):
        nll = sum(nll_logits(xs[b][d], final[b][d]) for d in range(D) if not obs[b][d])
        qp, pq = kl_terms(steps, b)
        nlls.append(nll)
        expected += (nll + w_q * qp + w_p * pq) / B
        asymmetry += abs(qp - pq) / B
    assert asymmetry > 1e-2  # the two KLs differ, so the test tells their weights apart
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-10)
    assert float(stats["nll"]) == pytest.approx(sum(nlls) / B, rel=1e-10)
    loss.backward()  # and it is the loss the gradients come from
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())



@pytest.mark.parametrize("fused", [True, False])
def test_optimiser_step_is_adam_on_the_clipped_gradient_plus_the_l2_gradient(fused):
    """seqimpute.optim: per-tensor clipping of the loss gradient at norm 10, then Adam on g + 2*l2*theta (the
    gradient of l2 * ||theta||^2), written out here for three steps of the budget schedule at its peak rate."""
    l2, lr, b1, b2, eps = 0.3, 0.05, 0.9, 0.999, 1e-8
    theta = [1.0, -2.0, 0.5]
    p = nn.Parameter(torch.tensor(theta, dtype=torch.float64))
    opt = Optimizer([p], "budget", l2=l2, lr=lr, warmup=1, fused=fused)
    m, v = [0.0] * 3, [0.0] * 3
    for i, grad in enumerate(([3.0, 4.0, 0.0], [12.0, -16.0, 0.0], [0.1, 0.2, -0.3])):  # the 2nd is clipped
        p.grad = torch.tensor(grad, dtype=torch.float64)
        assert opt.step(i, 0.0) == pytest.approx(lr)  # progress 0: past the warm-up, before any decay
        norm = math.sqrt(sum(u * u for u in grad))
        scale = min(1.0, 10.0 / (norm + 1e-6))
        for j in range(3):
            gj = grad[j] * scale + 2 * l2 * theta[j]
            m[j] = b1 * m[j] + (1 - b1) * gj
            v[j] = b2 * v[j] + (1 - b2) * gj * gj
            m_hat, v_hat = m[j] / (1 - b1 ** (i + 1)), v[j] / (1 - b2 ** (i + 1))
            theta[j] -= lr * m_hat / (math.sqrt(v_hat) + eps)
        assert p.detach().tolist() == pytest.approx(theta, rel=1e-9, abs=1e-12), i


# ---------------------------------------------------------------------------------------------- 4. SequentialImputer


def table(likelihood: str, n=24, d=5, seed=0) -> np.ndarray:
    """A small table with a few NaN; the first column is unique per row (to tell the rows of a batch apart)."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, d)) if likelihood == "bernoulli" else rng.normal(3.0, 2.0, (n, d))
    X[:, 0] = np.linspace(0.05, 0.95, n) if likelihood == "bernoulli" else np.linspace(-4, 9, n)
    holes = rng.random((n, d)) < 0.2
    holes[:, 0] = False
    X[holes] = np.nan
    return X


def imputer_nll(imp, likelihood: str, z: float, c: float, d: int, paper: bool) -> float:
    """One value's NLL in the imputer's standardised units (z = (x - mean) / scale)."""
    if likelihood == "bernoulli":
        return nll_paper(z, c) if paper else nll_logits(z, c)
    lv = 0.0 if imp is None else float(imp.log_var_[d])  # the learned log-variance starts at 0
    return 0.5 * (math.log(2 * math.pi) + lv + (z - c) ** 2 / math.exp(lv))


def standardised(imp, X: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(X), imp.fill_, (X - imp.mean_) / imp.scale_)


@pytest.mark.parametrize("model,likelihood", [("gpsi-add", "bernoulli"), ("gpsi-add", "gaussian"),
                                              ("lstm-add", "bernoulli")])
def test_sequential_imputer_trains_on_the_training_loss(model, likelihood, monkeypatch):
    """fit's loss on its one update equals mean_b [NLL of the values it hid + 0.9 sum KL(q||p) + 0.1 sum KL(p||q)]:
    the objective of `seqimpute train`, with the imputer's likelihood on the hidden, originally observed values."""
    import seqimpute.tabular.training as training_module

    steps = record_latent_steps(monkeypatch)
    recorded = []
    real_build = training_module.build_model

    def build(*args, **kwargs):
        m = perturb(real_build(*args, **kwargs))
        recorded.append(record_rollouts(m))
        return m

    monkeypatch.setattr(training_module, "build_model", build)
    X = table(likelihood)
    N, D = X.shape
    # from the mean canvas, where the learned log-variance starts at 0 (tests/test_gaussian_start.py checks the start)
    imp = SequentialImputer(model=model, likelihood=likelihood, hidden=8, latent=2, steps=2, max_updates=1,
                            early_stopping=False, batch_size=N, random_state=0, initial_canvas="mean").fit(X)
    (x, passed, r), = recorded[0]
    assert len(steps) == r.kl_qp.shape[0]
    Z, observed = standardised(imp, X), ~np.isnan(X)
    row = {round(float(v), 5): i for i, v in enumerate(Z[:, 0])}
    final, xs, known = rows(r.final), rows(x), passed.tolist()
    expected, asymmetry = 0.0, 0.0
    for b in range(N):
        i = row[round(xs[b][0], 5)]  # the table row this batch row holds
        hidden = [d for d in range(D) if observed[i, d] and not known[b][d]]  # never-observed values: not scored
        nll = sum(imputer_nll(None, likelihood, xs[b][d], final[b][d], d, paper=False) for d in hidden)
        qp, pq = kl_terms(steps, b)
        expected += (nll + 0.9 * qp + 0.1 * pq) / N
        asymmetry += abs(qp - pq) / N
    assert asymmetry > 1e-2
    assert imp.loss_ == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_sequential_imputer_score_equals_a_direct_loop(likelihood, monkeypatch):
    """score(X) = -(sum over K guided rollouts of [NLL of the hidden values at c_T + sum_t KL(q||p)]) / (K x number
    hidden), the NLL in the paper's epsilon form (Bernoulli) or in the data's units (Gaussian: + log scale)."""
    X = table(likelihood)
    imp = SequentialImputer(likelihood=likelihood, hidden=8, latent=2, steps=2, max_updates=3, max_minutes=None,
                            batch_size=8, n_rollouts=4, random_state=0).fit(X)
    Xv = table(likelihood, n=10, seed=1)
    steps = record_latent_steps(monkeypatch)
    recorded = record_rollouts(imp.model_)
    score = imp.score(Xv)

    K = 4
    assert len(recorded) == K
    Z, observed = standardised(imp, Xv), ~np.isnan(Xv)
    total, n_hidden = 0.0, None
    for k, (_, passed, r) in enumerate(recorded):
        S = r.kl_qp.shape[0]
        own = steps[k * S : (k + 1) * S]
        final, known = rows(r.final), passed.tolist()
        hidden = [(b, d) for b in range(len(Xv)) for d in range(Xv.shape[1]) if observed[b, d] and not known[b][d]]
        assert n_hidden in (None, len(hidden))  # the same held-out values for every rollout
        n_hidden = len(hidden)
        for b, d in hidden:
            total += imputer_nll(imp, likelihood, Z[b, d], final[b][d], d, paper=True)
            if likelihood == "gaussian":
                total += math.log(imp.scale_[d])  # the standardisation's log-Jacobian: NLL in the data's units
        total += sum(kl_terms(own, b)[0] for b in range(len(Xv)))
    assert 0 < n_hidden < observed.sum()
    assert score == pytest.approx(-total / (K * n_hidden), rel=1e-5)
