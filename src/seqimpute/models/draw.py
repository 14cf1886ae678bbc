"""DRAW without attention (Sec 2.4, the paper's Eq. 10-12) and the extended model of Sec 2.5 (docs/PAPER.md §6
(extended DRAW), §13.3 (extended DRAW spec)).

Both are unconditional generators: policies whose every value is missing, trained and scored with mask ``full`` only
(``allowed_masks``). The canvas c (logits) is refined over T steps; the guide q is DRAW's encoder, which reads the
whole image; the primary p is the generator, which never sees the image.

DRAW (Gregor et al. 2015, no attention; the paper's Eq. 10-12):

    s_0 = trainable constants (h_dec0, c_dec0, and the encoder's h_enc0, c_enc0);  c = c0 (trainable)
    for t = 1..T:
        hE = E([x, x - sigmoid(c), hG], hE)          # the guide (encoder) reads the image and the residual
        z  ~ q(z | hE) = N(Aq(hE))   (guided)   |   N(0, I)   (sampling: the step priors are isotropic)
        hG = G(z, hG)                                # the generator LSTM on z
        c  = c + Writer(hG)                          # c_T = c_0 + sum of the writes

The extended model (Sec 2.5; the authors' ``IMoOLDrawModels``, docs/PAPER.md §13.3):

    z0 ~ q0(z0 | x) = N(Q0(x))   (guided)   |   p0(z0) = N(zm_mean, exp(zm_logvar)), learned   (sampling)
    [cG, hG, cE, hE] = Mdec(z0)                      # the infinite-mixture initial state (also the encoder's)
    c = c0  (add)  |  Writer(cG)  (jump)
    for t = 1..T:
        hE = E([x, x - sigmoid(c), hG], hE)
        z  ~ q(z | hE)  (guided)   |   p(z | hG_{t-1}) = N(Ap(hG))  (sampling: the prior reads the PREVIOUS output)
        hG, cG = G(z, (hG, cG))
        c = c + Writer(hG)  (add: c_T = c_0 + sum of writes)  |  c = Writer(cG)  (jump: from the generator's CELL)

Q0 = tanh(Linear(D->250)) -> (mean, logvar); Mdec = tanh(Linear(mix->250)) -> tanh(Linear(250->2*dec+2*enc));
Aq, Ap affine Gaussian heads; Writer = Linear(dec->write) -> Linear(write->D), no nonlinearity (``write=0``: one
Linear(dec->D), DRAW's plain linear write). All cells are the authors' peephole LSTM (nn/lstm.py).

The rollout's KL rows: T for DRAW (its q0 = p0, so the initial state carries no KL), T+1 for the extended model (the
initial step first, with the KL between the learned prior p0 and q0, as the authors' code computes it here;
the zero of docs/PAPER.md §12.2 is the LSTM imputer's). ``log_ratio`` includes every row. An
unguided rollout is sampling from the prior: it never runs Q0, E, Aq, nor the part of Mdec that gives the
encoder's initial state. ``guide_parameters()`` lists q's parameters (what ``seqimpute finetune`` trains).

Speed: the encoder's input GEMM is folded as in models/lstm.py: x W_a + (x - g) W_b = x (W_a + W_b) - g W_b, the
x-part (plus bias) computed once per rollout, so each step is one GEMM over [g, hG, hE] with K = D + dec + enc
(the plain cell reads K = 2D + dec + enc); the generator's step is one GEMM over [z, hG].
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import SeqImputeError
from ..nn.lstm import PeepholeLSTMCell, gate_function
from ..nn.shared import SharedLinear
from ..precision import linear
from .lstm import AffineGauss, MixtureDecoder, MixtureNet, Writer, _linear, step_writer
from .policy import Policy, Rollout, Trajectory, latent_step

_MNIST = {"enc": 250, "dec": 250, "write": 200, "z": 100, "steps": 16}  # docs/PAPER.md §6 (extended DRAW)
DRAW_PRESETS = {
    "mnist": dict(_MNIST),
    "gregor": {"enc": 256, "dec": 256, "write": 0, "z": 100, "steps": 64},  # Gregor et al.'s 87.4-nat setting
}
EXT_PRESETS = {"mnist": {**_MNIST, "mix": 20}}
for _name in ("svhn", "tfd"):  # the paper has generators on MNIST only: larger images get the MNIST sizes
    DRAW_PRESETS[_name], EXT_PRESETS[_name] = dict(DRAW_PRESETS["mnist"]), dict(EXT_PRESETS["mnist"])


def _positive(**values) -> None:
    for k, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SeqImputeError(f"{k} must be a positive integer, got {v!r}.")


class _Generative(Policy):
    """What DRAW and the extended model share: mask 'full' only, the encoder's folded GEMM, the writer, sampling."""

    allowed_masks = ("full",)  # the trainer and the evaluator refuse any other mask
    train_mask = "full"
    l2 = 1e-5

    def _common(self, dim, enc, dec, write, z, steps, kl_q_weight, kl_p_weight, l2, fused):
        if not isinstance(write, int) or isinstance(write, bool) or write < 0:
            raise SeqImputeError(f"write must be a non-negative integer (0: one linear map), got {write!r}.")
        _positive(dim=dim, enc=enc, dec=dec, z=z, steps=steps)
        gate_function(fused)  # validates the name
        self.dim, self.enc, self.dec, self.write, self.z, self.steps = dim, enc, dec, write, z, steps
        self.kl_q_weight, self.kl_p_weight, self.l2, self.fused = float(kl_q_weight), float(kl_p_weight), float(l2), fused
        # the guide: the encoder reads [x, x - sigmoid(c), hG]; its head gives q(z_t | hE)
        self.encoder = PeepholeLSTMCell(2 * dim + dec, enc, fused)
        self.head_q = AffineGauss(enc, z)
        # the primary: the generator LSTM on z, and the writer
        self.decoder = PeepholeLSTMCell(z, dec, fused)
        self.write_out = Writer(dec, write, dim) if write else _linear(dec, dim)

    def _config(self) -> dict:
        return {"dim": self.dim, "enc": self.enc, "dec": self.dec, "write": self.write, "z": self.z,
                "steps": self.steps, "kl_q_weight": self.kl_q_weight, "kl_p_weight": self.kl_p_weight,
                "l2": self.l2, "fused": self.fused}

    def check_input(self, x: torch.Tensor, observed: torch.Tensor) -> None:
        super().check_input(x, observed)
        if observed.any():
            raise SeqImputeError(f"{self.name} is an unconditional generator: every value must be missing "
                                 f"(use --mask full).")

    def guide_parameters(self) -> list[nn.Parameter]:
        """q's parameters: the encoder (its input Linear included), q's head, and what else only q uses."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------------- pieces

    def _encoder_weights(self, x: torch.Tensor):
        """The folded encoder: (the per-rollout constant x (W_a + W_b) + b, the per-step layer [-W_b | W_c | W_h])."""
        E, D = self.encoder, self.dim
        w = E.inp.weight
        wa, wb, wc = w.split([D, D, w.shape[1] - 2 * D], dim=1)  # split: one cat in backward, no zero-filled slices
        return linear(x, wa + wb, E.inp.bias), SharedLinear(torch.cat([-wb, wc, E.weight_hh], 1))

    def _gates(self):
        return gate_function(self.fused)

    def _encode(self, gates, e_const, w_e, c, hG, state):
        """One encoder step on the current canvas c and the generator's previous output hG; returns (hE, cE)."""
        hE, cE = state
        E = self.encoder
        a = w_e(torch.cat([torch.sigmoid(c), hG, hE], 1), add=e_const)
        return gates(a, cE, E.p_i, E.p_f, E.p_o, E.gate_bias)

    def _generate(self, gates, w_g, z, state):
        hG, cG = state
        G = self.decoder
        a = w_g(torch.cat([z, hG], 1), add=G.inp.bias)
        return gates(a, cG, G.p_i, G.p_f, G.p_o, G.gate_bias)


class DRAW(_Generative):
    """DRAW without attention. ``dim``: values per image (D). ``enc``/``dec``: the encoder (guide) and generator
    LSTM widths. ``write``: the writer's linear bottleneck (0: one Linear dec -> D). ``z``: latent size per step.
    ``steps``: T."""

    name = "draw"

    def __init__(self, dim: int, enc: int = 250, dec: int = 250, write: int = 200, z: int = 100, steps: int = 16,
                 kl_q_weight: float = 0.9, kl_p_weight: float = 0.1, l2: float = 1e-5, fused: str = "none"):
        super().__init__()
        self._common(dim, enc, dec, write, z, steps, kl_q_weight, kl_p_weight, l2, fused)
        self.c0 = nn.Parameter(torch.zeros(dim))
        # s_0: a trainable constant (the generator's, and the encoder's, which belongs to q)
        self.h_dec0, self.c_dec0 = nn.Parameter(torch.zeros(dec)), nn.Parameter(torch.zeros(dec))
        self.h_enc0, self.c_enc0 = nn.Parameter(torch.zeros(enc)), nn.Parameter(torch.zeros(enc))

    def config(self) -> dict:
        return self._config()

    def guide_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.head_q.parameters(), self.h_enc0, self.c_enc0]

    def prior(self, hG: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z_t): N(0, I) whatever the state (Eq. 10). Returns (mean, logvar), each (B, z)."""
        zero = hG.new_zeros(hG.shape[0], self.z)
        return zero, zero

    def rollout(self, x, observed, guided=True, steps=None, generator=None) -> Rollout:
        self.check_input(x, observed)
        T = self.steps if steps is None else int(steps)
        B, D = x.shape
        gates = self._gates()
        # Weights used at every step are SharedLinear layers (each gradient formed in one pass over the steps).
        w_g = SharedLinear(self.decoder.stacked()[0])
        write_out = step_writer(self.write_out)
        hG, cG = self.h_dec0.expand(B, -1), self.c_dec0.expand(B, -1)
        c = self.c0.expand(B, D)
        mu_p, lv_p = self.prior(hG)
        mu_q = lv_q = None
        if guided:
            e_const, w_e = self._encoder_weights(x)
            head_q = self.head_q.step_layer()
            hE, cE = self.h_enc0.expand(B, -1), self.c_enc0.expand(B, -1)
        traj = Trajectory(c, guided)
        for _ in range(T):
            if guided:
                hE, cE = self._encode(gates, e_const, w_e, c, hG, (hE, cE))
                mu_q, lv_q = self.head_q(hE, head_q)
            z, kqp, kpq, lr = latent_step(mu_p, lv_p, mu_q, lv_q, guided, generator)
            hG, cG = self._generate(gates, w_g, z, (hG, cG))
            c = c + write_out(hG)
            traj.add(c, kqp, kpq, lr)
        return traj.rollout()


class ExtendedDRAW(_Generative):
    """The extended model of Sec 2.5 (``step_type`` 'add': c_T = c_0 + sum of writes; 'jump': c_t = Writer(cG_t),
    the paper's c_t = L(h_t) with h the LSTM cell). Sizes as DRAW, plus ``mix``: the size of z0."""

    def __init__(self, dim: int, enc: int = 250, dec: int = 250, write: int = 200, z: int = 100, mix: int = 20,
                 steps: int = 16, step_type: str = "add", kl_q_weight: float = 0.9, kl_p_weight: float = 0.1,
                 l2: float = 1e-5, fused: str = "none"):
        super().__init__()
        if step_type not in ("add", "jump"):
            raise SeqImputeError(f"step_type must be 'add' or 'jump', not {step_type!r}.")
        _positive(mix=mix)
        self._common(dim, enc, dec, write, z, steps, kl_q_weight, kl_p_weight, l2, fused)
        self.mix, self.step_type = mix, step_type
        self.name = f"draw-ext-{step_type}"
        if step_type == "add":  # jump starts from Writer(cG_0): no c0
            self.c0 = nn.Parameter(torch.zeros(dim))
        self.zm_mean, self.zm_logvar = nn.Parameter(torch.zeros(mix)), nn.Parameter(torch.zeros(mix))  # p0(z0)
        self.mix_q = MixtureNet(dim, mix)  # q0(z0 | x)
        self.mix_dec = MixtureDecoder(mix, 2 * dec + 2 * enc)  # z0 -> [cG, hG, cE, hE]
        self.head_p = AffineGauss(dec, z)  # p(z_t | hG_{t-1})

    def config(self) -> dict:
        return {**self._config(), "mix": self.mix, "step_type": self.step_type}

    def guide_parameters(self) -> list[nn.Parameter]:
        """Q0, the encoder (with its input Linear) and Aq: what the authors' fine-tuning trains (docs/PAPER.md §6
        (extended DRAW))."""
        return [*self.mix_q.parameters(), *self.encoder.parameters(), *self.head_q.parameters()]

    def prior(self, hG: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z_t | s_{t-1}): the affine head on the generator's previous output hG. Returns (mean, logvar)."""
        return self.head_p(hG)

    def rollout(self, x, observed, guided=True, steps=None, generator=None) -> Rollout:
        self.check_input(x, observed)
        T = self.steps if steps is None else int(steps)
        B, D = x.shape
        Hd, He = self.dec, self.enc
        jump = self.step_type == "jump"
        gates = self._gates()
        # the infinite-mixture initial state: z0 from q0(z0|x) (guided) or the learned p0(z0) (sampling)
        mu_q, lv_q = self.mix_q(x) if guided else (None, None)
        z0, kqp, kpq, log_ratio = latent_step(self.zm_mean.expand(B, -1), self.zm_logvar.expand(B, -1), mu_q, lv_q,
                                              guided, generator)
        init = self.mix_dec(z0, None if guided else 2 * Hd)
        cG, hG = init[:, :Hd], init[:, Hd : 2 * Hd]
        if guided:
            cE, hE = init[:, 2 * Hd : 2 * Hd + He], init[:, 2 * Hd + He :]
            e_const, w_e = self._encoder_weights(x)
            head_q = self.head_q.step_layer()
        # Weights used at every step are SharedLinear layers (each gradient formed in one pass over the steps).
        w_g = SharedLinear(self.decoder.stacked()[0])
        head_p = self.head_p.step_layer()
        write_out = step_writer(self.write_out)
        c = write_out(cG).to(x.dtype) if jump else self.c0.expand(B, D)  # the canvas: in the data's dtype
        traj = Trajectory(c, guided, first=(kqp, kpq, log_ratio))
        for _ in range(T):
            if guided:
                hE, cE = self._encode(gates, e_const, w_e, c, hG, (hE, cE))
                mu_q, lv_q = self.head_q(hE, head_q)
            mu_p, lv_p = self.head_p(hG, head_p)  # the prior reads the PREVIOUS generator output
            z, kqp, kpq, lr = latent_step(mu_p, lv_p, mu_q, lv_q, guided, generator)
            hG, cG = self._generate(gates, w_g, z, (hG, cG))
            c = write_out(cG).to(x.dtype) if jump else c + write_out(hG)
            traj.add(c, kqp, kpq, lr)
        return traj.rollout()
