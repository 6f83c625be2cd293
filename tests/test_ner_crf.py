"""The CRF against brute-force enumeration of all K^T paths on tiny cases."""

from __future__ import annotations

import itertools

import pytest
import torch

from clinfm.ner.crf import CRF

LENGTHS = [4, 2, 1, 3]  # one batch with rows of different lengths, left-aligned


def make_batch(num_tags: int, lengths: list[int] = LENGTHS, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    length = max(lengths)
    emissions = torch.randn(len(lengths), length, num_tags, generator=generator)
    mask = torch.arange(length).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    tags = torch.randint(num_tags, (len(lengths), length), generator=generator)
    return emissions, tags.masked_fill(~mask, -100), mask


def make_crf(num_tags: int, seed: int = 0) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(num_tags)
    with torch.no_grad():  # larger than the U(-0.1, 0.1) init, so transitions matter in the comparisons
        for parameter in crf.parameters():
            parameter.normal_()
    return crf


def path_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> float:
    """s(y) of one row written out term by term (emissions: (n, K) for that row only)."""
    start, transitions, end = crf.potentials()
    total = start[path[0]] + emissions[0, path[0]]
    for t in range(1, len(path)):
        total = total + transitions[path[t - 1], path[t]] + emissions[t, path[t]]
    return float((total + end[path[-1]]).detach())


def all_paths(crf: CRF, emissions: torch.Tensor, n: int) -> dict[tuple[int, ...], float]:
    return {
        path: path_score(crf, emissions[:n], path)
        for path in itertools.product(range(crf.num_tags), repeat=n)
    }


def test_parameters_are_initialised_as_in_the_paper():
    crf = CRF(19)
    assert crf.transitions.shape == (19, 19) and crf.start.shape == crf.end.shape == (19,)
    for parameter in crf.parameters():
        assert parameter.min() >= -0.1 and parameter.max() <= 0.1
    # 19*19 + 2*19 = 399, the paper's Table I difference between the CRF and Apt heads
    assert sum(p.numel() for p in crf.parameters()) == 399


def test_score_matches_a_hand_computation():
    crf = CRF(3)
    with torch.no_grad():
        crf.start.copy_(torch.tensor([0.1, 0.2, 0.3]))
        crf.end.copy_(torch.tensor([1.0, 2.0, 3.0]))
        crf.transitions.copy_(torch.arange(9.0).view(3, 3) / 10)  # A[i, j] = (3i + j) / 10
    emissions = torch.tensor([[[1.0, 0, 0], [0, 2.0, 0], [0, 0, 5.0]]])  # (1, 3, 3); row 2 is padding
    mask = torch.tensor([[True, True, False]])
    tags = torch.tensor([[0, 1, -100]])
    # start[0] + e_0[0] + A[0, 1] + e_1[1] + end[1] = 0.1 + 1 + 0.1 + 2 + 2.0 = 5.2
    assert crf.score(emissions, tags, mask).item() == pytest.approx(5.2)


@pytest.mark.parametrize("num_tags", [3, 4])
def test_score_log_partition_and_decode_match_brute_force(num_tags):
    crf = make_crf(num_tags)
    emissions, tags, mask = make_batch(num_tags)
    scores = crf.score(emissions, tags, mask)
    log_z = crf.log_partition(emissions, mask)
    best = crf.decode(emissions, mask)
    for row, n in enumerate(LENGTHS):
        paths = all_paths(crf, emissions[row], n)
        gold = tuple(tags[row, :n].tolist())
        assert scores[row].item() == pytest.approx(paths[gold], abs=1e-4)
        assert log_z[row].item() == pytest.approx(
            torch.logsumexp(torch.tensor(list(paths.values())), 0).item(), abs=1e-4
        )
        assert tuple(best[row, :n].tolist()) == max(paths, key=paths.get)
        assert (best[row, n:] == -1).all()
    assert best.dtype == torch.long


def test_nll_is_the_mean_of_log_z_minus_gold_score():
    crf = make_crf(4)
    emissions, tags, mask = make_batch(4)
    expected = (crf.log_partition(emissions, mask) - crf.score(emissions, tags, mask)).mean()
    assert crf.nll(emissions, tags, mask).item() == pytest.approx(expected.item())
    assert crf.nll(emissions, tags, mask).item() > 0  # -log p of a probability below one


def test_positions_outside_the_mask_change_nothing():
    crf = make_crf(4)
    emissions, tags, mask = make_batch(4)
    garbage = emissions.clone()
    garbage[~mask] = 1e3 * torch.randn(int((~mask).sum()), 4)
    garbage_tags = tags.masked_fill(~mask, 3)
    assert torch.allclose(crf.log_partition(emissions, mask), crf.log_partition(garbage, mask))
    assert torch.allclose(crf.score(emissions, tags, mask), crf.score(garbage, garbage_tags, mask))
    assert torch.equal(crf.decode(emissions, mask), crf.decode(garbage, mask))
    for row, n in enumerate(LENGTHS):  # and each row alone, cut to its length, gives the same
        alone = emissions[row : row + 1, :n]
        full = torch.ones(1, n, dtype=torch.bool)
        assert crf.log_partition(alone, full).item() == pytest.approx(
            crf.log_partition(emissions, mask)[row].item()
        )


def test_gradient_of_log_z_is_the_tag_marginals():
    crf = make_crf(3)
    emissions, _, mask = make_batch(3)
    emissions.requires_grad_(True)
    crf.log_partition(emissions, mask).sum().backward()
    # d log Z / d e_t[k] = p(y_t = k): sums to one per real position and is zero on padding
    assert torch.allclose(emissions.grad.sum(2), mask.float(), atol=1e-5)
    assert (emissions.grad >= 0).all()


def test_training_makes_the_gold_path_the_viterbi_path():
    crf = CRF(4)
    emissions = torch.zeros(1, 4, 4)  # no evidence from the tokens: the transitions must learn the path
    gold = torch.tensor([[0, 1, 2, 1]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    optimiser = torch.optim.Adam(crf.parameters(), lr=0.1)
    first = crf.nll(emissions, gold, mask).item()
    for _ in range(50):
        optimiser.zero_grad()
        loss = crf.nll(emissions, gold, mask)
        loss.backward()
        optimiser.step()
    assert loss.item() < first / 10
    assert torch.equal(crf.decode(emissions, mask), gold)


def test_bfloat16_autocast_gives_finite_float32_results():
    crf = make_crf(4)
    head = torch.nn.Linear(8, 4)
    features = torch.randn(len(LENGTHS), max(LENGTHS), 8)
    _, tags, mask = make_batch(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emissions = head(features)
        assert emissions.dtype == torch.bfloat16
        loss = crf.nll(emissions, tags, mask)
        best = crf.decode(emissions, mask)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in crf.parameters())
    assert ((best >= 0) == mask).all()


def test_masks_that_are_not_a_non_empty_prefix_are_refused():
    crf = CRF(3)
    emissions = torch.zeros(2, 3, 3)
    with pytest.raises(ValueError, match="prefix"):
        crf.log_partition(emissions, torch.tensor([[True, False, True], [True, True, True]]))
    with pytest.raises(ValueError, match="prefix"):
        crf.decode(emissions, torch.tensor([[False, False, False], [True, True, True]]))
    with pytest.raises(ValueError, match="emissions"):
        crf.log_partition(emissions, torch.ones(2, 2, dtype=torch.bool))


def test_constrain_bio_forbids_invalid_iob2_paths():
    names = ["O", "B-Drug", "I-Drug", "B-ADE", "I-ADE"]
    crf = make_crf(len(names))
    crf.constrain_bio(names)
    emissions = torch.zeros(1, 3, len(names))
    emissions[0, :, 4] = 5.0  # the tokens shout I-ADE everywhere; only B-ADE I-ADE I-ADE is valid
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert crf.decode(emissions, mask).tolist() == [[3, 4, 4]]

    def valid(path: tuple[int, ...]) -> bool:
        previous = "O"  # the start behaves like O: a path may not open with I-X
        for tag in (names[i] for i in path):
            if tag.startswith("I-") and previous not in ("B-" + tag[2:], tag):
                return False
            previous = tag
        return True

    paths = {p: s for p, s in all_paths(crf, emissions[0], 3).items() if valid(p)}
    # log Z now sums over the valid paths only (invalid ones carry a -1e4 penalty: exp() is 0)
    assert crf.log_partition(emissions, mask).item() == pytest.approx(
        torch.logsumexp(torch.tensor(list(paths.values())), 0).item(), abs=1e-4
    )
    with pytest.raises(ValueError):
        crf.constrain_bio(names[:-1])
