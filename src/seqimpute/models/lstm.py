"""LSTM-add and LSTM-jump (Sec 3.2; docs/PAPER.md §5 (LSTM imputers) and §13.2 (LSTM spec); the authors'
``IMoCLDrawModels``).

A reader/writer policy with an infinite-mixture initialisation:

    x~0 = m*x + (1-m)*sigmoid(c0)
    z0 ~ q(z0 | x) (guided)  or  p(z0 | x~0) (primary)         # mix_q, mix_p: tanh(Linear(D->250)) -> mean, logvar
    [cW, hW, cRp, hRp, cRq, hRq] = mix_dec(z0)                  # tanh(Linear(mix->250)) -> tanh(Linear(250->6H))
    for t = 1..T:
        g   = sigmoid(c)  (add)  |  sigmoid(Wout(cW))  (jump: the guess comes from the writer's CELL state)
        x~  = m*x + (1-m)*g
        guide reader   Rq reads [x,  x - g,  hW]                 # sees the whole observation
        primary reader Rp reads [x~, x~ - g, hW]                 # sees the known values (x~ - g = m*(x - g))
        (mu_q, lv_q) = Aq(hRq);  (mu_p, lv_p) = Ap(hRp)          # affine Gaussian heads
        z   ~ q (guided) | p (primary)
        (hW, cW) = writer LSTM(z)
        c   = c + Wout(hW)  (add: the writer's OUTPUT)  |  c = Wout(cW)  (jump: the writer's CELL)

Wout is two linear layers (H -> write -> D) with no nonlinearity. The rollout's KL rows are T+1: the mixture
initialisation first, then the T steps; ``log_ratio`` includes the initialisation. The authors' code computes the
initial step's KL(p||q) as KL(p||p) = 0 (docs/PAPER.md §12.2 (initial-step KL bug)); that bug is kept only behind
``authors_zero_init_kl_pq=True``. Unguided rollouts never run the guide reader Rq, its head Aq, q(z0|x), nor the
part of mix_dec that gives the guide reader's initial state.

Speed: each LSTM step is one GEMM over the concatenation [pieces..., h] with the stacked weight [W_in | W_h],
formed once per rollout. The readers' residual piece is folded away: x~ W_a + (x~ - g) W_b = x~ (W_a + W_b) - g W_b,
and for the guide x (W_a + W_b) + b is the same at every step and computed once, so the guide's per-step GEMM
shrinks from K = 2D + 2H to K = D + 2H. This computes the textbook cell's function (benchmarks/lstm_cell_speed.py
times the two, tests/test_lstm.py checks they agree). ``fused`` picks the cell's elementwise path (nn/lstm.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import SeqImputeError
from ..nn.lstm import INIT_STD, PeepholeLSTMCell, gate_function
from ..nn.shared import SharedLinear
from ..precision import linear
from .policy import Policy, Rollout, Trajectory, composite, latent_step

PRESETS = {  # docs/PAPER.md §5.1 (LSTM sizes)
    "mnist": {"hidden": 300, "write": 300, "z": 100, "mix": 20, "steps": 16},
    "tfd": {"hidden": 600, "write": 600, "z": 200, "mix": 20, "steps": 16},
    "svhn": {"hidden": 600, "write": 600, "z": 200, "mix": 20, "steps": 16},
}
MIX_HIDDEN = 250  # hidden width of the mixture nets (fixed in the authors' scripts)


def _linear(n_in: int, n_out: int) -> nn.Linear:
    """Linear with the Blocks init: weights N(0, 0.01^2), bias 0."""
    lin = nn.Linear(n_in, n_out)
    with torch.no_grad():
        lin.weight.normal_(0.0, INIT_STD)
        lin.bias.zero_()
    return lin


class AffineGauss(nn.Module):
    """The authors' CondNet([], [H, z]): affine maps to the mean and the log-variance of a diagonal Gaussian."""

    def __init__(self, n_in: int, n_z: int):
        super().__init__()
        self.mean, self.logvar = _linear(n_in, n_z), _linear(n_in, n_z)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Both heads as one (2z x in) GEMM."""
        return torch.cat([self.mean.weight, self.logvar.weight]), torch.cat([self.mean.bias, self.logvar.bias])

    def step_layer(self) -> SharedLinear:
        """Both heads as one layer with its weight formed once, for a head applied at every step."""
        return SharedLinear(*self.stacked())

    def forward(self, h: torch.Tensor, layer: SharedLinear | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return (layer or self.step_layer())(h).chunk(2, dim=-1)


class MixtureNet(nn.Module):
    """CondNet([Tanh], [in, 250, mix]): h = tanh(Linear(u)), then affine mean and log-variance heads."""

    def __init__(self, n_in: int, n_z: int, hidden: int = MIX_HIDDEN):
        super().__init__()
        self.fc = _linear(n_in, hidden)
        self.head = AffineGauss(hidden, n_z)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(torch.tanh(linear(u, self.fc.weight, self.fc.bias)))


class MixtureDecoder(nn.Module):
    """MLP([Tanh, Tanh], [mix, 250, out]): z0 -> initial LSTM states, every one in (-1, 1)."""

    def __init__(self, n_z: int, n_out: int, hidden: int = MIX_HIDDEN):
        super().__init__()
        self.fc1, self.fc2 = _linear(n_z, hidden), _linear(hidden, n_out)

    def forward(self, z: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
        """``n_out``: compute only the first n_out outputs (the unguided rollout skips the guide's states)."""
        h = torch.tanh(linear(z, self.fc1.weight, self.fc1.bias))
        w, b = self.fc2.weight, self.fc2.bias
        if n_out is not None:
            w, b = w[:n_out], b[:n_out]
        return torch.tanh(linear(h, w, b))


class Writer(nn.Module):
    """Linear(H -> write) then Linear(write -> D), no nonlinearity: a low-rank linear map with bias."""

    def __init__(self, hidden: int, write: int, n_out: int):
        super().__init__()
        self.fc1, self.fc2 = _linear(hidden, write), _linear(write, n_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return linear(linear(h, self.fc1.weight, self.fc1.bias), self.fc2.weight, self.fc2.bias)


def step_writer(write_out: nn.Module):
    """A callable for the writer (a `Writer` or one Linear) applied at every step of a rollout, its layers as
    SharedLinear."""
    if isinstance(write_out, Writer):
        fc1, fc2 = (SharedLinear(lin.weight, lin.bias) for lin in (write_out.fc1, write_out.fc2))
        return lambda h: fc2(fc1(h))
    return SharedLinear(write_out.weight, write_out.bias)


class LSTMImputer(Policy):
    """LSTM-add / LSTM-jump. ``dim``: values per example (D). ``hidden``: width H of all three LSTMs (the authors'
    enc_dim = var_dim = dec_dim). ``write``: the writer's linear bottleneck. ``z``: latent size per step. ``mix``:
    size of the mixture latent z0. ``steps``: T."""

    l2 = 1e-5

    def __init__(self, dim: int, hidden: int = 300, write: int = 300, z: int = 100, mix: int = 20, steps: int = 16,
                 step_type: str = "add", kl_q_weight: float = 0.9, kl_p_weight: float = 0.1, l2: float = 1e-5,
                 authors_zero_init_kl_pq: bool = False, fused: str = "none", layout: str = "fold"):
        super().__init__()
        if step_type not in ("add", "jump"):
            raise SeqImputeError(f"step_type must be 'add' or 'jump', not {step_type!r}.")
        if layout != "fold":  # the one layout left; still accepted because older run folders store layout="fold"
            raise SeqImputeError(f"layout must be 'fold', the only one (leave the option out), not {layout!r}.")
        for k, v in (("dim", dim), ("hidden", hidden), ("write", write), ("z", z), ("mix", mix), ("steps", steps)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SeqImputeError(f"{k} must be a positive integer, got {v!r}.")
        gate_function(fused)  # validates the name
        self.dim, self.hidden, self.write, self.z, self.mix, self.steps = dim, hidden, write, z, mix, steps
        self.step_type, self.fused = step_type, fused
        self.kl_q_weight, self.kl_p_weight, self.l2 = float(kl_q_weight), float(kl_p_weight), float(l2)
        self.authors_zero_init_kl_pq = bool(authors_zero_init_kl_pq)
        self.name = f"lstm-{step_type}"
        D, H = dim, hidden
        self.c0 = nn.Parameter(torch.zeros(D))
        self.mix_q = MixtureNet(D, mix)  # q(z0 | x): the guide's mixture component
        self.mix_p = MixtureNet(D, mix)  # p(z0 | x~0): the primary's
        self.mix_dec = MixtureDecoder(mix, 6 * H)  # -> [cW, hW, cRp, hRp, cRq, hRq]
        self.reader_p = PeepholeLSTMCell(2 * D + H, H, fused)  # primary reader: [x~, x~ - g, hW]
        self.reader_q = PeepholeLSTMCell(2 * D + H, H, fused)  # guide reader: [x, x - g, hW]
        self.writer = PeepholeLSTMCell(z, H, fused)  # writer LSTM on z
        self.head_p, self.head_q = AffineGauss(H, z), AffineGauss(H, z)
        self.write_out = Writer(H, write, D)

    def guide_parameters(self) -> list[nn.Parameter]:
        """q's parameters (q(z0|x), the guide reader and its head): what `seqimpute finetune` trains, e.g. for the
        paper's closed-loop MCAR-100 rows (mask full), raw and with q fine-tuned on the test set."""
        return [*self.mix_q.parameters(), *self.reader_q.parameters(), *self.head_q.parameters()]

    def config(self) -> dict:
        return {"dim": self.dim, "hidden": self.hidden, "write": self.write, "z": self.z, "mix": self.mix,
                "steps": self.steps, "step_type": self.step_type, "kl_q_weight": self.kl_q_weight,
                "kl_p_weight": self.kl_p_weight, "l2": self.l2,
                "authors_zero_init_kl_pq": self.authors_zero_init_kl_pq, "fused": self.fused}

    # ------------------------------------------------------------------------------------------- step cells

    def _folded_weight(self, cell: PeepholeLSTMCell) -> torch.Tensor:
        """A reader's stacked weight over [x', g, hW, h]: [W_a + W_b, -W_b, W_c, W_h], where the cell's input
        weight [W_a, W_b, W_c] reads [x', x' - g, hW]."""
        D = self.dim
        w_in = cell.inp.weight
        # split, not slices: its backward is one cat, where each slice's would zero-fill a whole weight-sized tensor
        wa, wb, wc = w_in.split([D, D, w_in.shape[1] - 2 * D], dim=1)
        return torch.cat([wa + wb, -wb, wc, cell.weight_hh], 1)

    def _step_cells(self, x: torch.Tensor, guided: bool):
        """The three LSTMs' updates at one step of a rollout, each ``cell(pieces, (h, c)) -> (h, c)``: the primary
        reader on [x~, g, hW], the guide reader on [g, hW] (None unguided; its x enters once, folded) and the writer on
        [z]. Their stacked weights are SharedLinear layers, each one's gradient formed in one pass over the steps."""
        gates = gate_function(self.fused)

        def cell(lstm: PeepholeLSTMCell, weight: torch.Tensor, bias: torch.Tensor):
            layer = SharedLinear(weight)

            def step(pieces: list[torch.Tensor], state: tuple[torch.Tensor, torch.Tensor]):
                a = layer(torch.cat([*pieces, state[0]], 1), add=bias)
                return gates(a, state[1], lstm.p_i, lstm.p_f, lstm.p_o, lstm.gate_bias)
            return step

        rp, rq, wr = self.reader_p, self.reader_q, self.writer
        reader_p, writer = cell(rp, self._folded_weight(rp), rp.inp.bias), cell(wr, wr.stacked()[0], wr.inp.bias)
        if not guided:
            return reader_p, None, writer
        wq = self._folded_weight(rq)
        wq_x, wq = wq.split([self.dim, wq.shape[1] - self.dim], dim=1)
        return reader_p, cell(rq, wq, linear(x, wq_x, rq.inp.bias)), writer  # x (W_a + W_b) + b: once per rollout

    # ------------------------------------------------------------------------------------------------ rollout

    def rollout(self, x, observed, guided=True, steps=None, generator=None) -> Rollout:
        self.check_input(x, observed)
        T = self.steps if steps is None else int(steps)
        B, D = x.shape
        H = self.hidden
        jump = self.step_type == "jump"

        # Mixture initialisation: z0 from q(z0|x) (guided) or p(z0|x~0) (primary), decoded into the initial states.
        c = self.c0.expand(B, D)
        mu_p, lv_p = self.mix_p(composite(x, observed, torch.sigmoid(c)))
        mu_q, lv_q = self.mix_q(x) if guided else (None, None)
        z0, kqp, kpq, log_ratio = latent_step(mu_p, lv_p, mu_q, lv_q, guided, generator)
        if guided and self.authors_zero_init_kl_pq:
            kpq = torch.zeros_like(kpq)  # the authors' KL(p0 || p0)
        init = self.mix_dec(z0, None if guided else 4 * H).split(H, dim=1)
        cW, hW, cP, hP = init[:4]
        cQ, hQ = init[4:] if guided else (None, None)

        # Weights once per rollout, not per step.
        head_p = self.head_p.step_layer()
        head_q = self.head_q.step_layer() if guided else None
        write_out = step_writer(self.write_out)
        reader_p, reader_q, writer = self._step_cells(x, guided)

        traj = Trajectory(c, guided, first=(kqp, kpq, log_ratio))
        guess = write_out(cW).to(x.dtype) if jump else c  # logits of the current guess g (the canvas's dtype)
        for _ in range(T):
            g = torch.sigmoid(guess)
            xt = composite(x, observed, g)
            hP, cP = reader_p([xt, g, hW], (hP, cP))
            mu_p, lv_p = self.head_p(hP, head_p)
            if guided:
                hQ, cQ = reader_q([g, hW], (hQ, cQ))
                mu_q, lv_q = self.head_q(hQ, head_q)
            z, kqp, kpq, lr = latent_step(mu_p, lv_p, mu_q, lv_q, guided, generator)
            hW, cW = writer([z], (hW, cW))
            c = write_out(cW).to(x.dtype) if jump else c + write_out(hW)
            guess = c
            traj.add(c, kqp, kpq, lr)
        return traj.rollout()
