"""Detectors x treatments, and DCL, in ``core.ssl.losses`` (issue 27), each against a float64 loop reference written
from the papers: which pairs a detector flags, and what a treatment does to the loss of the rows it touches."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.ssl.losses import Hints, dcl_loss, false_loss, false_loss_moco, info_nce

TAU = 0.5


def batch(n: int = 6, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, dim, generator=g)
    z = torch.cat([a, a + 0.5 * torch.randn(n, dim, generator=g)])
    perm = torch.randperm(2 * n, generator=g)
    return z[perm], torch.arange(n).repeat(2)[perm]


def cosines(z: torch.Tensor) -> torch.Tensor:
    u = F.normalize(z.double(), dim=1)
    return u @ u.T


def positive_of(ids: torch.Tensor) -> list[int]:
    return [next(j for j in range(len(ids)) if j != i and ids[j] == ids[i]) for i in range(len(ids))]


def negatives(ids: torch.Tensor, i: int) -> list[int]:
    return [j for j in range(len(ids)) if ids[j] != ids[i]]


def flagged(info) -> set[tuple[int, int]]:
    return set(zip(info.anchor.tolist(), info.candidate.tolist()))


def ref_loss(z: torch.Tensor, ids: torch.Tensor, treated: dict[int, list[int]], treatment: str,
             alpha: float = 1.0) -> float:
    """The loss of each row from the papers' formulas, in loops."""
    c = cosines(z) / TAU
    pos = positive_of(ids)
    total = 0.0
    for i in range(len(ids)):
        fl = treated.get(i, [])
        kept = [j for j in negatives(ids, i) if not (treatment == "eliminate" and j in fl)]
        den = math.exp(c[i, pos[i]]) + sum(math.exp(c[i, j]) for j in kept)
        if treatment == "fncc":
            num = math.exp(c[i, pos[i]]) + alpha * sum(math.exp(c[i, j]) for j in fl)
            total += -math.log(num / den)
        elif treatment == "eliminate":
            total += -math.log(math.exp(c[i, pos[i]]) / den)
        else:  # attract: mean of -log p over the positive and the flagged
            terms = [c[i, pos[i]]] + [c[i, j] for j in fl]
            total += -sum(t - math.log(den) for t in terms) / len(terms)
    return total / len(ids)


def by_row(pairs: set[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for a, m in pairs:
        out.setdefault(a, []).append(m)
    return out


# --------------------------------------------------------------------------------------------- detectors

@pytest.mark.parametrize("topk", [1, 3])
def test_nearest_flags_each_anchors_most_similar_negatives(topk: int) -> None:
    z, ids = batch()
    _, info = false_loss(z, ids, temperature=TAU, detector="nearest", topk=topk, treatment="eliminate")
    c = cosines(z)
    want = {(i, j) for i in range(len(ids))
            for j in sorted(negatives(ids, i), key=lambda j: -c[i, j].item())[:topk]}
    assert flagged(info) == want


def test_nearest_with_a_similarity_flags_every_negative_above_it() -> None:
    z, ids = batch()
    _, info = false_loss(z, ids, temperature=TAU, detector="nearest", similarity=0.2, treatment="eliminate")
    c = cosines(z)
    want = {(i, j) for i in range(len(ids)) for j in negatives(ids, i) if c[i, j] >= 0.2}
    assert want and flagged(info) == want
    assert torch.all(info.cos >= 0.2 - 1e-6)


def test_support_ranks_negatives_by_their_mean_similarity_to_the_support_views() -> None:
    z, ids = batch()
    g = torch.Generator().manual_seed(5)
    support = torch.randn(3, len(ids), z.shape[1], generator=g)
    _, info = false_loss(z, ids, temperature=TAU, detector="support", topk=2, treatment="attract",
                         hints=Hints(support=support))
    u = F.normalize(z.double(), dim=1)
    s = F.normalize(support.double(), dim=2)
    score = torch.einsum("smd,cd->smc", s, u).mean(0)
    want = {(i, j) for i in range(len(ids)) for j in sorted(negatives(ids, i), key=lambda j: -score[i, j].item())[:2]}
    assert flagged(info) == want


def test_support_views_equal_to_the_anchor_flag_what_nearest_flags() -> None:
    z, ids = batch()
    _, near = false_loss(z, ids, temperature=TAU, detector="nearest", topk=2)
    _, sup = false_loss(z, ids, temperature=TAU, detector="support", topk=2, hints=Hints(support=z[None].clone()))
    assert flagged(near) == flagged(sup)


def test_oracle_flags_exactly_the_negatives_of_the_anchors_class() -> None:
    z, ids = batch(n=6)
    class_of_id = torch.tensor([0, 1, 0, 2, 1, -1])  # image 5 has no class: it matches nothing
    _, info = false_loss(z, ids, temperature=TAU, detector="oracle", treatment="eliminate",
                         hints=Hints(class_of_id=class_of_id))
    cls = class_of_id[ids]
    want = {(i, j) for i in range(len(ids)) for j in negatives(ids, i) if cls[i] >= 0 and cls[i] == cls[j]}
    assert want and flagged(info) == want
    assert bool(info.calibrated.all())  # eliminate treats every flag: no gate


def test_a_detector_without_its_inputs_says_what_it_needs() -> None:
    z, ids = batch()
    with pytest.raises(ValueError, match="support"):
        false_loss(z, ids, detector="support")
    with pytest.raises(ValueError, match="class_of_id"):
        false_loss(z, ids, detector="oracle")
    with pytest.raises(ValueError, match="detector"):
        false_loss(z, ids, detector="psychic")
    with pytest.raises(ValueError, match="treatment"):
        false_loss(z, ids, treatment="ignore")


# --------------------------------------------------------------------------------------------- treatments

@pytest.mark.parametrize("treatment", ["fncc", "eliminate", "attract"])
@pytest.mark.parametrize("detector", ["nearest", "oracle"])
def test_each_treatment_matches_the_papers_formula(detector: str, treatment: str) -> None:
    z, ids = batch(seed=2)
    hints = Hints(class_of_id=torch.tensor([0, 1, 0, 1, 0, 2]))
    kw = {"topk": 2} if detector == "nearest" else {}
    loss, info = false_loss(z, ids, temperature=TAU, detector=detector, treatment=treatment, threshold=0.3,
                            alpha=0.7, hints=hints, **kw)
    treated = {p for p, t in zip(zip(info.anchor.tolist(), info.candidate.tolist()), info.calibrated.tolist()) if t}
    if treatment == "fncc":  # FALSE's gate: only anchors whose positive cosine reaches the threshold
        c = cosines(z)
        pos = positive_of(ids)
        assert treated == {(a, m) for a, m in flagged(info) if c[a, pos[a]] >= 0.3}
    else:
        assert treated == flagged(info)
    assert treated, "the test must treat something"
    assert loss.item() == pytest.approx(ref_loss(z, ids, by_row(treated), treatment, alpha=0.7), abs=1e-5)


def test_fnsd_with_fncc_is_false_exactly() -> None:
    z, ids = batch(seed=3)
    default, _ = false_loss(z, ids, threshold=0.3)
    named, _ = false_loss(z, ids, threshold=0.3, detector="fnsd", treatment="fncc")
    assert default.item() == named.item()


def test_treatments_give_gradients_and_keep_an_untouched_batch_at_infonce() -> None:
    z, ids = batch(seed=4)
    plain, _ = info_nce(z, ids, TAU)
    for treatment in ("eliminate", "attract"):
        zz = z.clone().requires_grad_(True)
        loss, _ = false_loss(zz, ids, temperature=TAU, detector="nearest", similarity=1.0, treatment=treatment)
        assert loss.item() == pytest.approx(plain.item(), abs=1e-6)  # cosine 1 flags nothing here
        loss, _ = false_loss(zz, ids, temperature=TAU, detector="nearest", topk=1, treatment=treatment)
        loss.backward()
        assert torch.isfinite(zz.grad).all() and zz.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------- DCL

def ref_dcl(z: torch.Tensor, ids: torch.Tensor, tau_plus: float, temperature: float = TAU) -> float:
    """Chuang et al.'s estimator, row by row: N_g = max((sum_neg e - tau+ N e_pos) / (1 - tau+), N e^{-1/t})."""
    c = cosines(z) / temperature
    pos = positive_of(ids)
    total = 0.0
    for i in range(len(ids)):
        negs = negatives(ids, i)
        n = len(negs)
        e_pos = math.exp(c[i, pos[i]])
        ng = (sum(math.exp(c[i, j]) for j in negs) - tau_plus * n * e_pos) / (1 - tau_plus)
        ng = max(ng, n * math.exp(-1 / temperature))
        total += -math.log(e_pos / (e_pos + ng))
    return total / len(ids)


@pytest.mark.parametrize("tau_plus", [0.05, 0.1, 0.3, 0.9])
def test_dcl_matches_chuang_et_al(tau_plus: float) -> None:
    z, ids = batch(seed=6)
    loss, info = dcl_loss(z, ids, TAU, tau_plus=tau_plus)
    assert loss.item() == pytest.approx(ref_dcl(z, ids, tau_plus), rel=1e-5)
    assert info.num_flagged == 0


def test_dcl_refuses_a_prior_outside_0_1() -> None:
    z, ids = batch()
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="tau_plus"):
            dcl_loss(z, ids, tau_plus=bad)


# --------------------------------------------------------------------------------------------- MoCo

def moco_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(4, 8, generator=g)
    return {"queries": q, "keys": q + 0.4 * torch.randn(4, 8, generator=g), "queue": torch.randn(10, 8, generator=g),
            "query_ids": torch.arange(4), "queue_ids": torch.tensor([0, 4, 5, 6, 7, 8, 9, 10, -1, 2])}


def test_moco_oracle_flags_same_class_queue_slots_but_never_the_own_tile_or_empty_slots() -> None:
    inp = moco_inputs()
    class_of_id = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    _, info = false_loss_moco(**inp, detector="oracle", treatment="eliminate", hints=Hints(class_of_id=class_of_id))
    qids, bank = inp["query_ids"], inp["queue_ids"]
    want = {(a, s) for a in range(4) for s in range(10)
            if bank[s] >= 0 and bank[s] != qids[a] and class_of_id[bank[s]] == class_of_id[qids[a]]}
    assert want and flagged(info) == want


@pytest.mark.parametrize("treatment", ["fncc", "eliminate", "attract"])
@pytest.mark.parametrize("detector", ["fnsd", "nearest", "support", "oracle"])
def test_moco_runs_every_combination(detector: str, treatment: str) -> None:
    inp = moco_inputs(1)
    hints = Hints(support=inp["queries"][None] + 0.1, class_of_id=torch.arange(11) % 3)
    loss, info = false_loss_moco(**inp, detector=detector, treatment=treatment, threshold=0.2, topk=2, hints=hints)
    assert torch.isfinite(loss)
    assert info.num_flagged > 0 and (info.candidate >= 0).all() and (info.candidate < 10).all()


def test_moco_dcl_matches_the_formula_over_the_valid_queue() -> None:
    inp = moco_inputs(2)
    t, tp = 0.2, 0.1
    loss, info = false_loss_moco(**inp, temperature=t, tau_plus=tp, detect=False)
    q = F.normalize(inp["queries"].double(), dim=1)
    k = F.normalize(inp["keys"].double(), dim=1)
    bank = F.normalize(inp["queue"].double(), dim=1)
    total = 0.0
    for a in range(4):
        negs = [s for s in range(10) if inp["queue_ids"][s] >= 0 and inp["queue_ids"][s] != a]
        e_pos = math.exp((q[a] @ k[a]).item() / t)
        ng = (sum(math.exp((q[a] @ bank[s]).item() / t) for s in negs) - tp * len(negs) * e_pos) / (1 - tp)
        ng = max(ng, len(negs) * math.exp(-1 / t))
        total += -math.log(e_pos / (e_pos + ng))
    assert loss.item() == pytest.approx(total / 4, rel=1e-5, abs=1e-6)
    assert info.num_flagged == 0
