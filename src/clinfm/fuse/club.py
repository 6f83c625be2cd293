"""CLUB: a contrastive log-ratio upper bound of mutual information, for MEDFuse's MI loss.

Cheng, Hao, Dai, Liu, Gan, Carin, "CLUB: A Contrastive Log-ratio Upper Bound of Mutual Information",
ICML 2020 (arXiv:2006.12013). MEDFuse (PAPERS.md section 4) adds ``0.1 * vCLUB(specific, shared)`` to
its classification loss, so that the modality-specific and the shared representations carry little
information about each other.

The equations used (N pairs (x_i, y_i) drawn from p(x, y)):

* CLUB (paper eq. 4 and 5): ``I_CLUB = E_p(x,y)[log p(y|x)] - E_p(x) E_p(y)[log p(y|x)] >= I(x; y)``,
  estimated by ``1/N sum_i log p(y_i|x_i) - 1/N^2 sum_i sum_j log p(y_j|x_i)``.
* vCLUB (section 3.2): the unknown p(y|x) is replaced by a variational Gaussian
  ``q_theta(y|x) = N(y; mu(x), diag(exp(logvar(x))))``, with mu and logvar two small MLPs. q is
  fitted by maximising the log-likelihood ``1/N sum_i log q(y_i|x_i)`` (eq. 11), i.e. minimising
  KL(p(y|x) || q(y|x)); vCLUB remains an upper bound when q is close enough to p (Theorem 3.2).
* vCLUB-S, the sampled variant (eq. 13): ``1/N sum_i [log q(y_i|x_i) - log q(y_k'_i|x_i)]`` with
  k'_i drawn uniformly from {1..N}; unbiased for vCLUB, O(N) instead of O(N^2).
* Training (Algorithm 1) alternates: one step of q on the current (detached) samples, then one step
  of the model with vCLUB as a penalty; q's parameters are not moved by the model's step.

``log q`` keeps the full Gaussian constant ``-1/2 log(2 pi)`` per dimension, so
:meth:`CLUB.log_likelihood` is a true log density and every estimate is in nats (the constant and
the ``logvar`` terms cancel in the contrast anyway).

Note on tightness: CLUB exceeds the mutual information by ``E_p(x) KL(p(y) || p(y|x))``; it is
exact only at independence. For y = rho x + sqrt(1 - rho^2) eps in d dimensions, the CLUB with the
true conditional is ``d rho^2 / (1 - rho^2)`` while I(x; y) = ``-d/2 log(1 - rho^2)`` (rho = 0.5:
0.333 vs 0.144 nats per dimension). As a loss to minimise this is harmless (both are 0 at
independence and grow with dependence); as an MI *value* it is an upper bound, not an estimate.

The all-pairs term needs no N x N x d tensor: for each i and dimension d,
``1/N sum_j (y_jd - mu_id)^2 = (mu_id - ybar_d)^2 + s2_d``, with ybar and s2 the batch mean and
(biased) variance of y, so the full vCLUB costs O(N d) memory and is exactly the all-pairs value.

Alternating schedule, as a caller writes it::

    club = CLUB(x_dim, y_dim)
    q_opt = torch.optim.Adam(club.parameters(), lr=1e-3)
    model_opt = torch.optim.Adam(model.parameters(), lr=...)   # club's parameters NOT included
    for batch in loader:
        spec, shared, task_loss = model(batch)
        loss = task_loss + alternate_step(club, q_opt, spec, shared, weight=0.1)
        model_opt.zero_grad(); loss.backward(); model_opt.step()

:func:`alternate_step` does q's step on detached tensors and returns ``weight * mi_penalty``, whose
gradient reaches x and y (hence the model) but never q's parameters (their ``.grad`` stays None).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from clinfm.errors import InputError

DEFAULT_WEIGHT = 0.1  # MEDFuse's weight on the MI loss
DEFAULT_LOGVAR_BOUND = 5.0
_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(y: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(y; mu, diag(exp(logvar))) summed over the last dimension, in nats (constant included)."""
    return -0.5 * (((y - mu) ** 2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(dim=-1)


class CLUB(nn.Module):
    """vCLUB with a diagonal Gaussian q_theta(y|x); ``club(x, y)`` is the upper-bound estimate in nats.

    ``hidden`` is the width of the two one-hidden-layer MLPs (default ``max(64, y_dim)``).
    ``logvar`` is soft-clamped to ``(-logvar_bound, logvar_bound)`` by ``bound * tanh(raw / bound)``
    (the paper's code bounds it with a plain tanh, i.e. bound 1, which cannot represent a conditional
    variance below exp(-1) = 0.37; 5 allows down to 0.0067 while keeping 1/variance finite).
    """

    def __init__(
        self, x_dim: int, y_dim: int, hidden: int | None = None, *, logvar_bound: float = DEFAULT_LOGVAR_BOUND
    ):
        super().__init__()
        if x_dim < 1 or y_dim < 1:
            raise InputError(f"CLUB needs positive dimensions, got x_dim={x_dim}, y_dim={y_dim}")
        if logvar_bound <= 0:
            raise InputError(f"CLUB logvar_bound must be positive, got {logvar_bound}")
        hidden = hidden if hidden is not None else max(64, y_dim)
        if hidden < 1:
            raise InputError(f"CLUB hidden width must be positive, got {hidden}")
        self.x_dim, self.y_dim, self.logvar_bound = x_dim, y_dim, float(logvar_bound)
        self.mu_net = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, y_dim))
        self.logvar_net = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, y_dim))

    # ----------------------------------------------------------------------------------- q(y|x)
    def conditional(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and the (bounded) log-variance of q(y|x), each (N, y_dim)."""
        b = self.logvar_bound
        return self.mu_net(x), b * torch.tanh(self.logvar_net(x) / b)

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            raise InputError(f"CLUB takes two tensors, got {type(x).__name__} and {type(y).__name__}")
        if x.ndim != 2 or y.ndim != 2:
            raise InputError(
                f"CLUB takes 2-D (batch, features) tensors, got x {tuple(x.shape)}, y {tuple(y.shape)}"
            )
        if x.shape[0] != y.shape[0]:
            raise InputError(f"CLUB needs paired samples: x has {x.shape[0]} rows but y has {y.shape[0]}")
        if x.shape[0] == 0:
            raise InputError("CLUB needs a non-empty batch, got 0 rows")
        if x.shape[1] != self.x_dim or y.shape[1] != self.y_dim:
            raise InputError(
                f"CLUB was built for x_dim={self.x_dim}, y_dim={self.y_dim}, "
                f"got x {tuple(x.shape)}, y {tuple(y.shape)}"
            )

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of log q(y_i|x_i) in nats: the objective q maximises (paper eq. 11)."""
        self._check(x, y)
        mu, logvar = self.conditional(x)
        return gaussian_log_density(y, mu, logvar).mean()

    def learning_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``-log_likelihood``; pass detached x and y so that only q learns from it."""
        return -self.log_likelihood(x, y)

    # --------------------------------------------------------------------------------- estimate
    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        sampled: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The vCLUB estimate in nats (scalar): positive pairs minus all pairs, or vCLUB-S if ``sampled``.

        Full: ``mean_i log q(y_i|x_i) - mean_{i,j} log q(y_j|x_i)`` (j = i included, as in the paper).
        Sampled: ``mean_i [log q(y_i|x_i) - log q(y_k_i|x_i)]``, k_i uniform over the batch.
        """
        self._check(x, y)
        mu, logvar = self.conditional(x)
        inv_var = torch.exp(-logvar)
        positive = -0.5 * ((y - mu) ** 2 * inv_var).sum(dim=-1)  # logvar and 2 pi cancel in the contrast
        if sampled:
            k = torch.randint(0, y.shape[0], (y.shape[0],), device=y.device, generator=generator)
            negative = -0.5 * ((y[k] - mu) ** 2 * inv_var).sum(dim=-1)
        else:
            y_mean = y.mean(dim=0)
            y_var = ((y - y_mean) ** 2).mean(dim=0)
            negative = -0.5 * (((mu - y_mean) ** 2 + y_var) * inv_var).sum(dim=-1)
        return (positive - negative).mean()

    def mi_penalty(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        sampled: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The estimate with q frozen: gradients flow into x and y only; q's ``.grad`` is left untouched."""
        frozen = {name: p.detach() for name, p in self.named_parameters()}
        return functional_call(self, frozen, (x, y), {"sampled": sampled, "generator": generator})


def alternate_step(
    club: CLUB,
    q_optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    weight: float = DEFAULT_WEIGHT,
    q_steps: int = 1,
    sampled: bool = False,
) -> torch.Tensor:
    """One round of the paper's Algorithm 1; returns ``weight * vCLUB(x, y)`` for the model's loss.

    First ``q_steps`` optimiser steps of q on ``x.detach(), y.detach()`` (maximising the
    log-likelihood), then the penalty from :meth:`CLUB.mi_penalty` with q's updated but frozen
    parameters, so the model's backward pass moves x and y (its representations) and never q.
    """
    xd, yd = x.detach(), y.detach()
    for _ in range(q_steps):
        q_optimizer.zero_grad()
        club.learning_loss(xd, yd).backward()
        q_optimizer.step()
    return weight * club.mi_penalty(x, y, sampled=sampled)
