"""A linear-chain conditional random field over per-token emission scores (the paper's CRF head).

For emissions e (B, T, K), tags y_1..y_n of one row (n = its mask length) and parameters
start (K), transitions A (K, K) indexed [from, to], and end (K), the score of a path is

    s(y) = start[y_1] + e_1[y_1] + sum_{t=2..n} (A[y_{t-1}, y_t] + e_t[y_t]) + end[y_n]

and the model is p(y | x) = exp(s(y)) / Z with log Z = logsumexp over all K^n paths, computed by the
forward algorithm. The loss is mean over the batch of (log Z - s(gold)) and decoding is Viterbi.

Masks follow the attention mask: each row is True on a prefix (left-aligned) of at least one
position; positions past it are padding and never change a result. Everything is computed in
float32, whatever the dtype of the emissions or of the module, so the layer works under autocast.
"""

from __future__ import annotations

import torch
from torch import nn

IMPOSSIBLE = -1e4  # a fixed penalty, not -inf: exp() of it is 0 in float32 yet gradients stay finite


class CRF(nn.Module):
    """Linear-chain CRF with learnable transitions [from, to] and start/end scores, all U(-0.1, 0.1)."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        # Fixed penalties for impossible moves (all zero unless constrain_bio() is called); buffers, so
        # they are saved with the model but are not parameters (the paper's head has K*K + 2K of those).
        self.register_buffer("transition_penalty", torch.zeros(num_tags, num_tags))
        self.register_buffer("start_penalty", torch.zeros(num_tags))

    # ----------------------------------------------------------------------------------- potentials

    def potentials(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(start, transitions, end) in float32 with the constraint penalties added."""
        start = self.start.float() + self.start_penalty
        transitions = self.transitions.float() + self.transition_penalty
        return start, transitions, self.end.float()

    def constrain_bio(self, tag_names: list[str]) -> None:
        """Forbid paths that are not valid IOB2 (off by default; the paper has no constraints).

        I-X may only follow B-X or I-X, and no path may start with I-X. The penalty applies in
        score, log_partition and decode alike, so p(y | x) stays a distribution over valid paths;
        a gold path that breaks IOB2 then costs about 1e4 per break, so repair the tags first.
        """
        if len(tag_names) != self.num_tags:
            raise ValueError(f"constrain_bio got {len(tag_names)} names for {self.num_tags} tags")
        transition_penalty = torch.zeros(self.num_tags, self.num_tags)
        start_penalty = torch.zeros(self.num_tags)
        for to, to_name in enumerate(tag_names):
            if not to_name.startswith("I-"):
                continue
            start_penalty[to] = IMPOSSIBLE
            for frm, from_name in enumerate(tag_names):
                if from_name not in ("B-" + to_name[2:], to_name):
                    transition_penalty[frm, to] = IMPOSSIBLE
        self.transition_penalty.copy_(transition_penalty)
        self.start_penalty.copy_(start_penalty)

    # ------------------------------------------------------------------------------------ the model

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """s(y) of the given tag paths, (B,). Tags outside the mask are ignored (any value, e.g. -100)."""
        emissions, mask = _check(emissions, mask)
        start, transitions, end = self.potentials()
        tags = tags.long().masked_fill(~mask, 0)  # padding may hold an ignore index; gather needs a valid one
        maskf = mask.float()
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # e_t[y_t], (B, T)
        moved = transitions[tags[:, :-1], tags[:, 1:]]  # A[y_{t-1}, y_t], (B, T-1)
        last = mask.sum(1) - 1  # each row's own last position
        last_tags = tags.gather(1, last.unsqueeze(1)).squeeze(1)
        return start[tags[:, 0]] + (emitted * maskf).sum(1) + (moved * maskf[:, 1:]).sum(1) + end[last_tags]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z by the forward algorithm, (B,).

        alpha_t[j] = log sum over paths ending in j at t = logsumexp_i(alpha_{t-1}[i] + A[i, j]) + e_t[j];
        past a row's end alpha stays frozen, so end[] is added at each row's own last position.
        """
        emissions, mask = _check(emissions, mask)
        start, transitions, end = self.potentials()
        alpha = start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
        return torch.logsumexp(alpha + end, dim=1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The paper's loss: mean over the batch of -log p(gold | x) = log Z - s(gold)."""
        return (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).mean()

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Same as nll()."""
        return self.nll(emissions, tags, mask)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Viterbi: the best path of each row, (B, T) long, with -1 outside the mask.

        delta_t[j] = max_i(delta_{t-1}[i] + A[i, j]) + e_t[j], remembering the argmax i. Past a row's
        end the back-pointer is the identity, so one backtrack from T-1 serves every length.
        """
        emissions, mask = _check(emissions, mask)
        start, transitions, end = self.potentials()
        batch, length, num_tags = emissions.shape
        stay = torch.arange(num_tags, device=emissions.device).expand(batch, num_tags)
        delta = start + emissions[:, 0]
        backpointers = []
        for t in range(1, length):
            best, best_from = (delta.unsqueeze(2) + transitions).max(dim=1)  # over "from", (B, K)
            inside = mask[:, t].unsqueeze(1)
            delta = torch.where(inside, best + emissions[:, t], delta)
            backpointers.append(torch.where(inside, best_from, stay))
        path = [(delta + end).argmax(dim=1)]
        for best_from in reversed(backpointers):
            path.append(best_from.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        path = torch.stack(path[::-1], dim=1)
        return path.masked_fill(~mask, -1)


def _check(emissions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Emissions as float32 and the mask as bool, after checking the mask is a non-empty prefix per row."""
    if emissions.dim() != 3 or mask.shape != emissions.shape[:2] or emissions.shape[1] == 0:
        raise ValueError(
            f"CRF wants emissions (B, T>0, K) and mask (B, T); got {emissions.shape}, {mask.shape}"
        )
    mask = mask.bool()
    if not bool(mask[:, 0].all()) or bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("CRF mask must be True on a non-empty prefix of each row (left-aligned, no gaps)")
    return emissions.float(), mask
