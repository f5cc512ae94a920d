"""Tests of ``core.ssl.losses`` against the specification in FALSE_SPEC.md.

The centre of this file is a slow, deliberately naive reference: float64, explicit Python loops over anchors i
and columns j, following the spec's numbered steps literally (s_i, D_ij, selection, gate, calibration of row a,
P_i, N_i, L_i = -log(P_i / (P_i + N_i)), mean).  The vectorised implementation is compared to it in value,
gradient and flagged pairs on shuffled batches that contain near-duplicate images, so the FNCC gate really opens.

Data sets are drawn by seed and a seed is only used when the reference says the selection is robust (the best
and next-best distances, and every c_{i,pos(i)} and the threshold, are separated by far more than float32 error),
so a float32 implementation and the float64 reference must agree on the flagged pairs.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

from pydantic import ValidationError

from core.config import PretrainConfig
from core.ssl.losses import ContrastiveInfo, false_loss, false_loss_moco, info_nce

PAIR_FIELDS = ("anchor", "candidate", "distance", "cos", "cos_pos", "calibrated", "mirrored")


# ======================================================================================= float64 loop reference


@dataclass
class Ref:
    """Everything the reference computed; ``loss`` carries a float64 autograd graph back to ``leaves``."""

    loss: torch.Tensor
    leaves: tuple[torch.Tensor, ...]
    pos: list[int]  # SimCLR: row of the other view; MoCo: unused (empty)
    cos: list[list[float]]  # c_ij (MoCo: query i x queue slot j)
    cos_pos: list[float]  # c_{i,pos(i)}
    negs: list[list[int]]  # negatives of every anchor
    dist: dict[tuple[int, int], float]  # D_ij over every (anchor, negative)
    flagged: list[tuple[int, int]]  # selected pairs (before the gate)
    calibrated: set[tuple[int, int]] = field(default_factory=set)  # gated pairs incl. symmetric mirrors
    mirrors: set[tuple[int, int]] = field(default_factory=set)  # pairs added only by symmetric=True
    margin_ok: bool = True
    spos: list[float] = field(default_factory=list)  # s_i = S_{i,pos(i)}

    def grads(self) -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(self.loss, self.leaves)


def _d_tol(s_i: float, s_ij: float) -> float:
    """What float32 can resolve of D_ij = |S_ij - s_i| (generous)."""
    return 1e-4 * max(s_i, s_ij, 1.0)


def _select_and_gate(dist, s, S, negs, cos_pos, *, selection, topk, threshold, triangle):
    """Steps 3 and 4 on python floats.  Returns (flagged, gated, margin_ok)."""
    margin_ok = True
    if selection == "global":
        cands = [(i, j) for (i, j) in dist if (j > i or not triangle)]
        dmin = min(dist[k] for k in cands)
        flagged = sorted(k for k in cands if dist[k] == dmin)  # ties are all kept
        a0, m0 = flagged[0]
        for k in cands:
            if dist[k] != dmin:
                margin_ok &= dist[k] - dmin > _d_tol(s[k[0]], S[k[0]][k[1]]) + _d_tol(s[a0], S[a0][m0])
    else:
        flagged = []
        for i in range(len(negs)):
            order = sorted(negs[i], key=lambda j: dist[(i, j)])
            flagged += [(i, j) for j in order[:topk]]
            if len(order) > topk:
                a, b = order[topk - 1], order[topk]
                margin_ok &= dist[(i, b)] - dist[(i, a)] > _d_tol(s[i], S[i][a]) + _d_tol(s[i], S[i][b])
    gate = [cp >= threshold for cp in cos_pos]
    margin_ok &= all(abs(cp - threshold) > 1e-5 for cp in cos_pos)
    return flagged, gate, margin_ok


def ref_false_loss(
    emb: torch.Tensor,
    ids: torch.Tensor,
    *,
    temperature: float = 0.5,
    alpha: float = 1.0,
    threshold: float = 0.9,
    selection: str = "global",
    topk: int = 1,
    symmetric: bool = False,
) -> Ref:
    h = emb.detach().to(torch.float64).clone().requires_grad_(True)
    M = h.shape[0]
    id_list = [int(v) for v in ids.tolist()]
    pos = []
    for i in range(M):
        partners = [j for j in range(M) if j != i and id_list[j] == id_list[i]]
        assert len(partners) == 1
        pos.append(partners[0])

    # Notation: z_i = h_i / ||h_i||, c_ij = z_i . z_j, S_ij = exp(c_ij / tau)
    z = [h[i] / torch.sqrt(torch.sum(h[i] * h[i])) for i in range(M)]
    c = [[torch.dot(z[i], z[j]) for j in range(M)] for i in range(M)]
    S = [[torch.exp(c[i][j] / temperature) for j in range(M)] for i in range(M)]
    cv = [[c[i][j].item() for j in range(M)] for i in range(M)]
    Sv = [[S[i][j].item() for j in range(M)] for i in range(M)]
    negs = [[j for j in range(M) if j != i and j != pos[i]] for i in range(M)]

    # 1. s_i = S_{i,pos(i)}
    s = [Sv[i][pos[i]] for i in range(M)]
    # 2. D_ij = |S_ij - s_i| for every negative (global mode searches j > i only)
    dist = {(i, j): abs(Sv[i][j] - s[i]) for i in range(M) for j in negs[i]}
    # 3./4. selection and gate on c_{a,pos(a)} >= T
    cos_pos = [cv[i][pos[i]] for i in range(M)]
    flagged, gate, margin_ok = _select_and_gate(
        dist, s, Sv, negs, cos_pos, selection=selection, topk=topk, threshold=threshold, triangle=True
    )
    calibrated = {(a, m) for (a, m) in flagged if gate[a]}
    mirrors: set[tuple[int, int]] = set()
    if symmetric:
        mirrors = {(m, a) for (a, m) in calibrated if gate[m]} - calibrated
        calibrated = calibrated | mirrors

    # 5./6. calibrated weights in the calibrated rows only, L_i = -log(P_i / (P_i + N_i)), mean over anchors
    terms = []
    for i in range(M):
        P = S[i][pos[i]]
        N = torch.zeros((), dtype=torch.float64)
        for j in negs[i]:
            if (i, j) in calibrated:
                P = P + alpha * S[i][j]
                N = N + (1.0 - alpha) * S[i][j]
            else:
                N = N + S[i][j]
        terms.append(-torch.log(P / (P + N)))
    loss = sum(terms) / M
    return Ref(loss, (h,), pos, cv, cos_pos, negs, dist, flagged, calibrated, mirrors, margin_ok, s)


def ref_moco(
    queries, keys, queue, query_ids, queue_ids, *, temperature=0.2, alpha=1.0, threshold=0.9,
    selection="global", topk=1,
) -> Ref:
    q = queries.detach().to(torch.float64).clone().requires_grad_(True)
    k = keys.detach().to(torch.float64).clone().requires_grad_(True)
    u = queue.detach().to(torch.float64)
    N, K = q.shape[0], u.shape[0]
    qid = [int(v) for v in query_ids.tolist()]
    uid = [int(v) for v in queue_ids.tolist()]

    zq = [q[i] / torch.sqrt(torch.sum(q[i] * q[i])) for i in range(N)]
    zk = [k[i] / torch.sqrt(torch.sum(k[i] * k[i])) for i in range(N)]
    zu = [u[j] / torch.sqrt(torch.sum(u[j] * u[j])) for j in range(K)]
    cpos_t = [torch.dot(zq[i], zk[i]) for i in range(N)]
    c = [[torch.dot(zq[i], zu[j]) for j in range(K)] for i in range(N)]
    Spos = [torch.exp(cpos_t[i] / temperature) for i in range(N)]
    S = [[torch.exp(c[i][j] / temperature) for j in range(K)] for i in range(N)]
    cv = [[c[i][j].item() for j in range(K)] for i in range(N)]
    Sv = [[S[i][j].item() for j in range(K)] for i in range(N)]
    negs = [[j for j in range(K) if uid[j] != qid[i]] for i in range(N)]  # same tile is not a negative

    s = [Spos[i].item() for i in range(N)]
    dist = {(i, j): abs(Sv[i][j] - s[i]) for i in range(N) for j in negs[i]}
    cos_pos = [cpos_t[i].item() for i in range(N)]
    flagged, gate, margin_ok = _select_and_gate(
        dist, s, Sv, negs, cos_pos, selection=selection, topk=topk, threshold=threshold, triangle=False
    )
    calibrated = {(a, m) for (a, m) in flagged if gate[a]}

    terms = []
    for i in range(N):
        P = Spos[i]
        Nn = torch.zeros((), dtype=torch.float64)
        for j in negs[i]:
            if (i, j) in calibrated:
                P = P + alpha * S[i][j]
                Nn = Nn + (1.0 - alpha) * S[i][j]
            else:
                Nn = Nn + S[i][j]
        terms.append(-torch.log(P / (P + Nn)))
    loss = sum(terms) / N
    return Ref(loss, (q, k), [], cv, cos_pos, negs, dist, flagged, calibrated, set(), margin_ok, s)


# ============================================================================================== data makers


def make_batch(
    n_images: int,
    dim: int = 16,
    *,
    seed: int = 0,
    n_dup: int = 3,
    dup_spread: float = 0.15,
    view_noise: tuple[float, float] = (0.05, 0.5),
    dup_noise: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of ``n_images`` images, rows shuffled, ids arbitrary (non-contiguous) integers.

    The first ``n_dup`` images are near-duplicates of each other (different ids, nearly identical views), so
    their c_{i,pos(i)} is ~1 (gate open) and their negatives sit close to their positives (small D).
    """
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n_images, dim, generator=g, dtype=torch.float64)
    center = torch.randn(dim, generator=g, dtype=torch.float64)
    if n_dup:
        base[:n_dup] = center + dup_spread * torch.randn(n_dup, dim, generator=g, dtype=torch.float64)
    lo, hi = view_noise
    sigma = lo + (hi - lo) * torch.rand(n_images, 1, generator=g, dtype=torch.float64)
    sigma[:n_dup] = dup_noise
    v1 = base + sigma * torch.randn(n_images, dim, generator=g, dtype=torch.float64)
    v2 = base + sigma * torch.randn(n_images, dim, generator=g, dtype=torch.float64)
    views = torch.cat([v1, v2]) * (0.5 + 2.0 * torch.rand(2 * n_images, 1, generator=g, dtype=torch.float64))
    img_ids = torch.randperm(10_000, generator=g)[:n_images]
    ids = torch.cat([img_ids, img_ids])
    perm = torch.randperm(2 * n_images, generator=g)
    return views[perm].to(torch.float32).contiguous(), ids[perm].to(torch.long).contiguous()


def find_batch(
    n_images: int,
    ref_kwargs: dict,
    *,
    require: Callable[[Ref], bool] = lambda r: True,
    seeds=range(300),
    **gen_kwargs,
) -> tuple[torch.Tensor, torch.Tensor, Ref]:
    for seed in seeds:
        emb, ids = make_batch(n_images, seed=seed, **gen_kwargs)
        ref = ref_false_loss(emb, ids, **ref_kwargs)
        if ref.margin_ok and require(ref):
            return emb, ids, ref
    raise AssertionError(f"test setup: no robust batch for {n_images=} {ref_kwargs=} {gen_kwargs=}")


def gate_mixed(ref: Ref) -> bool:
    """Calibration happened, and the gate is closed for at least one anchor."""
    return bool(ref.calibrated) and any(cp < 0.9 for cp in ref.cos_pos)


def make_moco(
    n_queries: int = 8, n_queue: int = 24, dim: int = 16, *, seed: int = 0, n_dup: int = 3, n_same: int = 3
):
    """Queries/keys (raw), an L2-normalised queue with dataset ids, some of which equal a query's id."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n_queries, dim, generator=g, dtype=torch.float64)
    sigma = 0.05 + 0.45 * torch.rand(n_queries, 1, generator=g, dtype=torch.float64)
    sigma[: max(n_dup, n_same)] = 0.01
    queries = base + sigma * torch.randn(n_queries, dim, generator=g, dtype=torch.float64)
    keys = base + sigma * torch.randn(n_queries, dim, generator=g, dtype=torch.float64)
    queries = queries * (0.5 + 2 * torch.rand(n_queries, 1, generator=g, dtype=torch.float64))
    keys = keys * (0.5 + 2 * torch.rand(n_queries, 1, generator=g, dtype=torch.float64))
    queue = torch.randn(n_queue, dim, generator=g, dtype=torch.float64)
    all_ids = torch.randperm(10_000, generator=g)[: n_queries + n_queue]
    query_ids, queue_ids = all_ids[:n_queries].clone(), all_ids[n_queries:].clone()
    for t in range(n_dup):  # other tiles that look like query t (likely false negatives)
        queue[t] = base[t] + 0.15 * torch.randn(dim, generator=g, dtype=torch.float64)
    for t in range(n_same):  # the same tile as query t, seen at an earlier step: must not be a negative
        queue[n_dup + t] = base[t] + 0.01 * torch.randn(dim, generator=g, dtype=torch.float64)
        queue_ids[n_dup + t] = query_ids[t]
    perm = torch.randperm(n_queue, generator=g)
    queue, queue_ids = F.normalize(queue[perm], dim=1), queue_ids[perm]
    return (queries.float(), keys.float(), queue.float().contiguous(), query_ids.long(), queue_ids.long())


# ================================================================================================ helpers


def run_false(emb, ids, **kw):
    x = emb.clone().requires_grad_(True)
    loss, info = false_loss(x, ids, **kw)
    (grad,) = torch.autograd.grad(loss, x)
    return loss, info, grad


def rows(info: ContrastiveInfo) -> list[tuple]:
    return list(
        zip(
            info.anchor.tolist(),
            info.candidate.tolist(),
            [bool(v) for v in info.calibrated.tolist()],
            [bool(v) for v in info.mirrored.tolist()],
        )
    )


def assert_pairs_match(info: ContrastiveInfo, ref: Ref, *, symmetric: bool = False) -> None:
    r = rows(info)
    own = [(a, m) for a, m, _, mir in r if not mir]
    assert sorted(own) == sorted(ref.flagged), "flagged pairs differ from the reference"
    assert len(set(own)) == len(own), "a pair is listed twice"
    cal = {(a, m) for a, m, c, _ in r if c}
    assert cal == ref.calibrated, f"calibrated pairs {sorted(cal)} != reference {sorted(ref.calibrated)}"
    if not symmetric:
        assert not any(mir for *_, mir in r), "mirrored pairs without symmetric=True"
    else:
        mirrored_cal = {(a, m) for a, m, c, mir in r if c and mir}
        assert ref.mirrors <= mirrored_cal, "pairs calibrated only by symmetry must be marked mirrored"


def assert_pair_values(info: ContrastiveInfo, ref: Ref) -> None:
    """distance, cos and cos_pos of every listed pair equal the reference's."""
    for t, (a, m, _, mir) in enumerate(rows(info)):
        assert info.cos[t].item() == pytest.approx(ref.cos[a][m], abs=2e-5)
        assert info.cos_pos[t].item() == pytest.approx(ref.cos_pos[a], abs=2e-5)
        if not mir:
            d = ref.dist[(a, m)]
            assert info.distance[t].item() == pytest.approx(d, rel=1e-4, abs=1e-5 * max(1.0, ref.spos[a]))


def assert_close_to_ref(loss, grad, ref, *, grad_index=0):
    torch.testing.assert_close(loss.detach().double(), ref.loss.detach(), rtol=1e-5, atol=1e-6)
    rg = ref.grads()[grad_index]
    torch.testing.assert_close(grad.double(), rg, rtol=1e-4, atol=2e-6)


# ============================================================================ 1. loop reference, value + grad

GLOBAL_CASES = [
    # n_images, tau, alpha, symmetric
    (4, 0.5, 1.0, False),
    (10, 0.5, 1.0, False),
    (16, 0.5, 0.5, False),
    (16, 0.2, 1.0, False),
    (12, 0.1, 0.9, False),
    (10, 0.5, 1.0, True),
    (16, 0.2, 0.7, True),
]


@pytest.mark.parametrize("n_images,tau,alpha,symmetric", GLOBAL_CASES)
def test_global_matches_loop_reference(n_images, tau, alpha, symmetric):
    kw = dict(temperature=tau, alpha=alpha, threshold=0.9, selection="global", symmetric=symmetric)
    emb, ids, ref = find_batch(
        n_images,
        kw,
        n_dup=max(2, n_images // 4),
        require=lambda r: gate_mixed(r) and (not symmetric or bool(r.mirrors)),
    )
    loss, info, grad = run_false(emb, ids, **kw)
    assert info.num_calibrated > 0, "the gate should have opened on near-duplicates"
    assert_pairs_match(info, ref, symmetric=symmetric)
    assert_pair_values(info, ref)
    assert_close_to_ref(loss, grad, ref)
    # the calibration must matter: the loss differs from plain InfoNCE
    plain, _ = info_nce(emb, ids, temperature=tau)
    assert abs(loss.item() - plain.item()) > 1e-5


PER_ANCHOR_CASES = [
    # n_images, tau, alpha, topk, symmetric
    (4, 0.5, 1.0, 1, False),
    (16, 0.5, 1.0, 2, False),
    (16, 0.2, 0.9, 3, False),
    (12, 0.5, 1.0, 1, True),
    (16, 0.5, 0.5, 2, True),
]


@pytest.mark.parametrize("n_images,tau,alpha,topk,symmetric", PER_ANCHOR_CASES)
def test_per_anchor_matches_loop_reference(n_images, tau, alpha, topk, symmetric):
    kw = dict(temperature=tau, alpha=alpha, threshold=0.9, selection="per_anchor", topk=topk, symmetric=symmetric)
    emb, ids, ref = find_batch(
        n_images,
        kw,
        n_dup=max(2, n_images // 4),
        require=lambda r: gate_mixed(r) and (not symmetric or bool(r.mirrors)),
    )
    loss, info, grad = run_false(emb, ids, **kw)
    assert info.num_calibrated > 0
    assert_pairs_match(info, ref, symmetric=symmetric)
    assert_pair_values(info, ref)
    assert_close_to_ref(loss, grad, ref)


def _pm(*signs: int) -> torch.Tensor:
    """A unit vector with entries +-0.5 (4-D): every cosine between two of them is an exact multiple of 0.25."""
    return 0.5 * torch.tensor(signs, dtype=torch.float32)


def test_global_ties_are_all_kept():
    """Exact ties (entries +-0.5, row scales powers of two: all cosines exact) are all flagged; min D > 0."""
    a, b, c, d, e = _pm(1, -1, 1, -1), _pm(-1, 1, 1, 1), _pm(-1, 1, 1, -1), _pm(1, -1, -1, -1), _pm(1, -1, 1, 1)
    # views of one image are not adjacent; rows 6, 7 (the image with views e, d) come last so that their
    # D = 0 entries lie in the excluded lower triangle and the minimum over j > i is > 0
    views = [c, a, b, a, c, b, e, d]
    ids = torch.tensor([500, 31, 8, 31, 500, 8, 2, 2])
    scales = [1.0, 2.0, 0.5, 4.0, 0.25, 1.0, 8.0, 2.0]
    emb = torch.stack([s * v for s, v in zip(scales, views)])
    kw = dict(temperature=0.5, alpha=1.0, threshold=0.9, selection="global")
    ref = ref_false_loss(emb, ids, **kw)
    assert len(ref.flagged) == 8 and min(ref.dist[k] for k in ref.flagged) > 1.0
    loss, info, grad = run_false(emb, ids, **kw)
    assert_pairs_match(info, ref)
    assert info.num_calibrated == len(ref.calibrated) > 0
    assert_close_to_ref(loss, grad, ref)


def test_global_selects_exact_zero_distance_unique():
    """A negative whose similarity equals the anchor's positive similarity exactly (D = 0) is THE minimum."""
    emb = torch.stack([_pm(1, 1, 1, 1), _pm(1, 1, 1, -1), 2.0 * _pm(1, 1, -1, 1), _pm(-1, -1, 1, 1)])
    ids = torch.tensor([1, 1, 2, 2])
    kw = dict(temperature=0.5, alpha=1.0, threshold=0.9, selection="global")
    ref = ref_false_loss(emb, ids, **kw)
    assert ref.flagged == [(0, 2)] and ref.dist[(0, 2)] == 0.0  # c_02 = c_01 = 0.5
    loss, info, grad = run_false(emb, ids, **kw)
    assert [(a, m) for a, m, *_ in rows(info)] == [(0, 2)], "the D = 0 pair must be flagged"
    assert info.num_flagged == 1 and info.num_calibrated == 0  # gate closed: c_01 = 0.5 < 0.9
    assert_close_to_ref(loss, grad, ref)


def test_global_exact_duplicate_tiles_are_flagged():
    """Exact duplicate tiles (identical views, e.g. repeated blank tiles) give D = 0 ties; all are flagged."""
    dim = 8
    e = torch.eye(dim)
    dirs = [0, 0, 1, 1, 2, 3]  # images A, B share e0; C, D share e1; E, F unique
    img_ids = [11, 5, 42, 7, 100, 3]
    rows_, ids_ = [], []
    for dd, i in zip(dirs, img_ids):
        rows_ += [3.0 * e[dd], 0.5 * e[dd]]
        ids_ += [i, i]
    perm = torch.tensor([5, 0, 9, 2, 11, 7, 1, 4, 10, 3, 8, 6])
    emb = torch.stack(rows_)[perm].contiguous()
    ids = torch.tensor(ids_)[perm].contiguous()
    kw = dict(temperature=0.5, alpha=1.0, threshold=0.9, selection="global")
    ref = ref_false_loss(emb, ids, **kw)
    assert len(ref.flagged) == 8  # the 4 cross-image pairs within {A, B} and within {C, D}, j > i
    loss, info, grad = run_false(emb, ids, **kw)
    assert_pairs_match(info, ref)
    assert info.num_calibrated == 8
    assert_close_to_ref(loss, grad, ref)


@pytest.mark.parametrize("symmetric", [False, True])
def test_all_negatives_calibrated_gives_zero_loss(symmetric):
    """M = 4, both images confident, per_anchor topk = 2 flags every negative, alpha = 1: every numerator equals
    the denominator, so the loss is exactly 0 -- a mutual pair must not be counted twice under symmetric=True."""
    emb, ids = make_batch(2, dim=16, seed=5, n_dup=2)
    kw = dict(temperature=0.5, alpha=1.0, threshold=0.9, selection="per_anchor", topk=2, symmetric=symmetric)
    ref = ref_false_loss(emb, ids, **kw)
    assert len(ref.calibrated) == 8 and ref.loss.item() == pytest.approx(0.0, abs=1e-12)
    loss, info, grad = run_false(emb, ids, **kw)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert grad.abs().max().item() < 1e-5


def test_symmetric_mirrors_only_calibrated_pairs():
    """symmetric=True mirrors a CALIBRATED pair (a, m) into row m.  Here the single globally flagged pair has a
    closed gate in row a (c_{a,pos(a)} < T) and an open one in row m: nothing is calibrated, in either row."""
    kw = dict(temperature=0.5, alpha=1.0, threshold=0.9, selection="global", symmetric=True)

    def wanted(r: Ref) -> bool:
        if len(r.flagged) != 1:
            return False
        a, m = r.flagged[0]
        return r.cos_pos[a] < 0.85 and r.cos_pos[m] > 0.95

    emb, ids, ref = find_batch(8, kw, n_dup=0, view_noise=(0.02, 0.6), require=wanted)
    assert not ref.calibrated
    loss, info, grad = run_false(emb, ids, **kw)
    (a, m) = ref.flagged[0]
    assert (m, a) not in {(x, y) for x, y, c, _ in rows(info) if c}, "mirror of an uncalibrated pair calibrated"
    assert info.num_calibrated == 0
    plain, _ = info_nce(emb, ids, temperature=0.5)
    torch.testing.assert_close(loss.detach(), plain, rtol=1e-6, atol=1e-6)
    assert_close_to_ref(loss, grad, ref)


@pytest.mark.parametrize("selection", ["global", "per_anchor"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_loss_is_never_negative(selection, symmetric):
    """P_i <= P_i + N_i since every weight is >= 0, so L_i >= 0 for every anchor and the mean is >= 0."""
    for seed in range(5):
        emb, ids = make_batch(6, dim=16, seed=seed, n_dup=6, dup_spread=0.05)
        loss, _ = false_loss(emb, ids, temperature=0.5, alpha=1.0, threshold=0.5, selection=selection, topk=3,
                             symmetric=symmetric)
        assert loss.item() >= -1e-6, (seed, loss.item())


def test_row_permutation_equivariance():
    kw = dict(temperature=0.5, alpha=1.0, selection="per_anchor", topk=2, symmetric=True)
    emb, ids, _ = find_batch(10, kw, require=gate_mixed)
    loss, info, grad = run_false(emb, ids, **kw)
    perm = torch.randperm(emb.shape[0], generator=torch.Generator().manual_seed(1))
    loss_p, info_p, grad_p = run_false(emb[perm], ids[perm], **kw)
    torch.testing.assert_close(loss_p, loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad_p, grad[perm], rtol=1e-5, atol=1e-7)
    cal = {(a, m) for a, m, c, _ in rows(info) if c}
    cal_p = {(perm[a].item(), perm[m].item()) for a, m, c, _ in rows(info_p) if c}  # back to original rows
    assert cal_p == cal and cal


# ================================================================ 2. alpha = 0 or T > 1  ->  exactly InfoNCE


@pytest.mark.parametrize("selection", ["global", "per_anchor"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("override", [{"alpha": 0.0}, {"threshold": math.inf}])
def test_no_calibration_equals_info_nce_exactly(selection, symmetric, override):
    base = dict(temperature=0.5, alpha=1.0, threshold=0.9, selection=selection, topk=2, symmetric=symmetric)
    emb, ids, ref = find_batch(12, base, require=gate_mixed)  # with the defaults the gate WOULD open
    kw = {**base, **override}
    loss, info, grad = run_false(emb, ids, **kw)
    x = emb.clone().requires_grad_(True)
    plain, plain_info = info_nce(x, ids, temperature=0.5)
    (plain_grad,) = torch.autograd.grad(plain, x)
    assert torch.equal(loss, plain), f"{loss.item()!r} != {plain.item()!r}"
    torch.testing.assert_close(grad, plain_grad, rtol=0, atol=1e-7)
    if "threshold" in override:
        assert info.num_flagged > 0 and info.num_calibrated == 0
        assert not info.calibrated.any()
    assert plain_info.num_flagged == 0


# ======================================================================= 3. info_nce is plain NT-Xent (CE)


def nt_xent_cross_entropy(x: torch.Tensor, ids: torch.Tensor, tau: float) -> torch.Tensor:
    z = F.normalize(x, dim=1)
    logits = z @ z.T / tau
    M = x.shape[0]
    eye = torch.eye(M, dtype=torch.bool)
    logits = logits.masked_fill(eye, float("-inf"))
    same = (ids[:, None] == ids[None, :]) & ~eye
    target = same.float().argmax(dim=1)
    return F.cross_entropy(logits, target)


@pytest.mark.parametrize("tau", [0.5, 0.2, 0.07])
@pytest.mark.parametrize("n_images", [2, 9, 24])
def test_info_nce_is_cross_entropy_nt_xent(tau, n_images):
    emb, ids = make_batch(n_images, dim=16, seed=7, n_dup=min(2, n_images))
    x1 = emb.clone().requires_grad_(True)
    x2 = emb.clone().requires_grad_(True)
    loss, info = info_nce(x1, ids, temperature=tau)
    ce = nt_xent_cross_entropy(x2, ids, tau)
    torch.testing.assert_close(loss, ce, rtol=1e-6, atol=1e-6)
    (g1,) = torch.autograd.grad(loss, x1)
    (g2,) = torch.autograd.grad(ce, x2)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-7)
    assert info.num_flagged == 0 and info.anchor.numel() == 0


def test_info_nce_default_temperature_is_half():
    emb, ids = make_batch(6, seed=2)
    torch.testing.assert_close(info_nce(emb, ids)[0], nt_xent_cross_entropy(emb, ids, 0.5), rtol=1e-6, atol=1e-6)


# ========================================================= 4. alpha = 1: a second positive, same denominator


@pytest.mark.parametrize("selection,topk", [("global", 1), ("per_anchor", 2)])
def test_alpha_one_is_second_positive(selection, topk):
    kw = dict(temperature=0.5, alpha=1.0, threshold=0.9, selection=selection, topk=topk)
    emb, ids, ref = find_batch(12, kw, require=gate_mixed)
    loss, info, grad = run_false(emb, ids, **kw)
    # independent closed form: L_i = -log( (S_i,pos + sum_cal S_im) / sum_{j != i} S_ij )
    z = F.normalize(emb.double(), dim=1)
    S = torch.exp(z @ z.T / 0.5)
    M = emb.shape[0]
    total = 0.0
    cal = {(a, m) for a, m, c, _ in rows(info) if c}
    assert cal == ref.calibrated and cal
    for i in range(M):
        num = S[i, ref.pos[i]] + sum(S[i, m] for (a, m) in cal if a == i)
        den = sum(S[i, j] for j in range(M) if j != i)  # denominator unchanged by calibration
        total += -math.log(float(num / den))
    assert loss.item() == pytest.approx(total / M, rel=1e-5, abs=1e-6)
    assert_close_to_ref(loss, grad, ref)
    # and this is not plain InfoNCE
    assert loss.item() < info_nce(emb, ids, temperature=0.5)[0].item() - 1e-4


# ================================================================================ 5. per_anchor top-k flags


@pytest.mark.parametrize("topk", [1, 2, 3])
def test_per_anchor_flags_exactly_topk_smallest(topk):
    kw = dict(temperature=0.5, alpha=1.0, threshold=0.9, selection="per_anchor", topk=topk)
    emb, ids, ref = find_batch(12, kw, require=gate_mixed)
    M = emb.shape[0]
    loss, info = false_loss(emb, ids, **kw)
    counts = Counter(info.anchor.tolist())
    assert set(counts) == set(range(M)), "every anchor flags its own negatives"
    assert all(v == topk for v in counts.values()), counts
    assert info.num_flagged == M * topk
    for a, m, cal, _ in rows(info):
        assert m != a, "an anchor flagged itself"
        assert m != ref.pos[a], "an anchor flagged its own positive"
        assert cal == (ref.cos_pos[a] >= 0.9), "gate must use the anchor's own c_{a,pos(a)}"
    for a in range(M):
        got = sorted(info.distance[info.anchor == a].tolist())
        want = sorted(ref.dist[(a, j)] for j in ref.negs[a])[:topk]
        assert got == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert sorted((a, m) for a, m, *_ in rows(info)) == sorted(ref.flagged)
    assert any(m < a for a, m, *_ in rows(info)), "per_anchor searches both triangles"


# =============================================== 6. global: excluded entries never selected (sentinel bug)


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_global_never_selects_excluded_entries(tau):
    """All real distances exceed 3; the reference's sentinel 3 would then select i == j, j < i or pos(i)."""
    kw = dict(temperature=tau, alpha=1.0, threshold=0.9, selection="global")
    emb, ids, ref = find_batch(
        6, kw, n_dup=0, view_noise=(0.005, 0.01), require=lambda r: min(r.dist.values()) > 3.0
    )
    assert min(ref.dist.values()) > 3.0
    loss, info, grad = run_false(emb, ids, **kw)
    assert info.num_flagged >= 1
    for a, m, _, _ in rows(info):
        assert m > a, "global selection is over j > i only"
        assert m != ref.pos[a]
    assert (info.distance > 3.0).all()
    assert_pairs_match(info, ref)
    assert_close_to_ref(loss, grad, ref)


# ================================================================================================ 7. stability


def test_bf16_autocast_small_tau_finite():
    emb, ids = make_batch(128, dim=128, seed=0, n_dup=16, view_noise=(0.01, 0.5))  # M = 256
    x = emb.to(torch.bfloat16).requires_grad_(True)
    for kw in (
        dict(selection="global"),
        dict(selection="per_anchor", topk=2),
        dict(selection="per_anchor", topk=1, symmetric=True, alpha=0.9),
    ):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, info = false_loss(x, ids, temperature=0.05, **kw)
        assert torch.isfinite(loss).all(), kw
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(g.float()).all(), kw
        assert g.float().abs().sum() > 0
        assert info.num_flagged >= 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain, _ = info_nce(x, ids, temperature=0.05)
    (g,) = torch.autograd.grad(plain, x)
    assert torch.isfinite(plain) and torch.isfinite(g.float()).all()
    ref = nt_xent_cross_entropy(x.detach().double(), ids, 0.05)
    assert abs(plain.item() - ref.item()) <= 0.02 * abs(ref.item()) + 0.05


@pytest.mark.parametrize("selection", ["global", "per_anchor"])
def test_tiny_temperature_fp32_finite(selection):
    """tau = 0.01: l_{i,pos} ~ 100 for near-identical views, exp(100) overflows float32."""
    emb, ids = make_batch(32, dim=32, seed=4, n_dup=6, view_noise=(0.001, 0.3), dup_noise=0.001)
    x = emb.clone().requires_grad_(True)
    loss, info = false_loss(x, ids, temperature=0.01, selection=selection, topk=2)
    (g,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    assert info.num_flagged >= 1
    pos = ref_positions(ids)
    for a, m, *_ in rows(info):
        assert m != a and m != pos[a]
    x2 = emb.clone().requires_grad_(True)
    plain, _ = info_nce(x2, ids, temperature=0.01)
    (g2,) = torch.autograd.grad(plain, x2)
    assert torch.isfinite(plain) and torch.isfinite(g2).all()
    want = nt_xent_cross_entropy(emb.double(), ids, 0.01)
    assert plain.item() == pytest.approx(want.item(), rel=1e-4, abs=1e-5)


def ref_positions(ids: torch.Tensor) -> list[int]:
    L = ids.tolist()
    return [next(j for j in range(len(L)) if j != i and L[j] == L[i]) for i in range(len(L))]


# ============================================================================================= 8. diagnostics


def test_diagnostics_and_records():
    kw = dict(temperature=0.5, alpha=1.0, threshold=0.9, selection="per_anchor", topk=2, symmetric=True)
    emb, ids, ref = find_batch(12, kw, require=lambda r: gate_mixed(r) and bool(r.mirrors))
    M = emb.shape[0]
    loss, info = false_loss(emb.clone().requires_grad_(True), ids, **kw)
    n = info.anchor.shape[0]
    for name in PAIR_FIELDS:
        t = getattr(info, name)
        assert isinstance(t, torch.Tensor) and t.shape == (n,), name
        assert not t.requires_grad, name
    assert info.anchor.dtype == torch.long and info.candidate.dtype == torch.long
    assert info.calibrated.dtype == torch.bool and info.mirrored.dtype == torch.bool
    assert info.num_flagged == n
    assert info.num_calibrated == int(info.calibrated.sum())
    assert info.mirrored.any()
    assert info.frac_above_threshold == pytest.approx(sum(cp >= 0.9 for cp in ref.cos_pos) / M, abs=1e-6)
    assert 0 < info.frac_above_threshold < 1
    assert info.pos_cos_mean == pytest.approx(sum(ref.cos_pos) / M, abs=1e-5)
    neg = [ref.cos[i][j] for i in range(M) for j in ref.negs[i]]
    assert info.neg_cos_mean == pytest.approx(sum(neg) / len(neg), abs=1e-5)
    assert_pair_values(info, ref)

    records = info.to_records()
    assert isinstance(records, list) and len(records) == n
    json.dumps(records)  # JSON-serialisable
    for t, rec in enumerate(records):
        assert isinstance(rec, dict)
        assert set(PAIR_FIELDS) <= set(rec)
        assert rec["anchor"] == info.anchor[t].item() and rec["candidate"] == info.candidate[t].item()
        assert bool(rec["calibrated"]) == bool(info.calibrated[t]) and bool(rec["mirrored"]) == bool(info.mirrored[t])
        assert rec["distance"] == pytest.approx(info.distance[t].item(), rel=1e-6)
        assert rec["cos"] == pytest.approx(info.cos[t].item(), abs=1e-6)


def test_diagnostics_threshold_fraction_global():
    kw = dict(temperature=0.5, alpha=1.0, threshold=0.95, selection="global")
    emb, ids, ref = find_batch(10, kw, require=lambda r: bool(r.calibrated))
    _, info = false_loss(emb, ids, **kw)
    M = emb.shape[0]
    assert info.frac_above_threshold == pytest.approx(sum(cp >= 0.95 for cp in ref.cos_pos) / M, abs=1e-6)
    assert info.num_flagged == len(info.anchor) == len(ref.flagged)
    json.dumps(info.to_records())


# ==================================================================================================== 9. MoCo


def find_moco(ref_kwargs, *, require=lambda r: True, **gen):
    for seed in range(300):
        data = make_moco(seed=seed, **gen)
        ref = ref_moco(*data, **ref_kwargs)
        if ref.margin_ok and require(ref):
            return data, ref
    raise AssertionError("test setup: no robust MoCo batch")


MOCO_CASES = [
    dict(temperature=0.2, alpha=1.0, threshold=0.9, selection="global"),
    dict(temperature=0.5, alpha=0.5, threshold=0.9, selection="global"),
    dict(temperature=0.2, alpha=0.9, threshold=0.9, selection="per_anchor", topk=2),
    dict(temperature=0.2, alpha=1.0, threshold=0.9, selection="per_anchor", topk=1),
]


@pytest.mark.parametrize("kw", MOCO_CASES, ids=lambda kw: f"{kw['selection']}-a{kw['alpha']}-t{kw['temperature']}")
def test_moco_matches_loop_reference(kw):
    data, ref = find_moco(kw, require=gate_mixed)
    queries, keys, queue, qids, uids = data
    q = queries.clone().requires_grad_(True)
    k = keys.clone().requires_grad_(True)
    loss, info = false_loss_moco(q, k, queue, query_ids=qids, queue_ids=uids, **kw)
    gq, gk = torch.autograd.grad(loss, (q, k))
    rq, rk = ref.grads()
    torch.testing.assert_close(loss.detach().double(), ref.loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gq.double(), rq, rtol=1e-4, atol=2e-6)
    torch.testing.assert_close(gk.double(), rk, rtol=1e-4, atol=2e-6)
    assert info.num_calibrated > 0
    pairs = [(a, m) for a, m, *_ in rows(info)]
    assert sorted(pairs) == sorted(ref.flagged)
    assert {(a, m) for a, m, c, _ in rows(info) if c} == ref.calibrated
    for a, m in pairs:
        assert uids[m].item() != qids[a].item(), "a queue entry of the query's own tile was flagged"
    for t, (a, m) in enumerate(pairs):
        assert info.cos[t].item() == pytest.approx(ref.cos[a][m], abs=2e-5)
        assert info.cos_pos[t].item() == pytest.approx(ref.cos_pos[a], abs=2e-5)


def test_moco_same_tile_excluded_even_when_it_would_win():
    kw = dict(temperature=0.2, alpha=1.0, threshold=0.9, selection="global")
    data, ref = find_moco(kw, require=gate_mixed)
    queries, keys, queue, qids, uids = data
    # the same-tile entries are nearly identical to their query, so D would be ~0 if they were negatives
    zq, zk = F.normalize(queries.double(), dim=1), F.normalize(keys.double(), dim=1)
    s = torch.exp((zq * zk).sum(1) / 0.2)
    S = torch.exp(zq @ queue.double().T / 0.2)
    same = qids[:, None] == uids[None, :]
    assert same.any()
    d_same = (S - s[:, None]).abs()[same].min().item()
    assert d_same < min(ref.dist.values())
    _, info = false_loss_moco(queries, keys, queue, query_ids=qids, queue_ids=uids, **kw)
    for a, m, *_ in rows(info):
        assert not same[a, m]
    assert sorted((a, m) for a, m, *_ in rows(info)) == sorted(ref.flagged)


def test_moco_global_selects_exact_zero_distance():
    """Queue entry with c(q_0, u_0) == c(q_0, k_0) exactly (+-0.5 vectors): D = 0 is the global minimum."""
    queries = torch.stack([_pm(1, 1, 1, 1), 3.0 * _pm(1, -1, 1, -1)])
    keys = torch.stack([2.0 * _pm(1, 1, 1, -1), _pm(1, -1, 1, -1)])
    queue = torch.stack([_pm(1, 1, -1, 1), _pm(-1, -1, 1, 1), _pm(-1, 1, -1, 1)])
    qids, uids = torch.tensor([10, 20]), torch.tensor([30, 40, 50])
    kw = dict(temperature=0.2, alpha=1.0, threshold=0.9, selection="global")
    ref = ref_moco(queries, keys, queue, qids, uids, **kw)
    assert ref.flagged == [(0, 0)] and ref.dist[(0, 0)] == 0.0
    loss, info = false_loss_moco(queries, keys, queue, query_ids=qids, queue_ids=uids, **kw)
    assert [(a, m) for a, m, *_ in rows(info)] == [(0, 0)], "the D = 0 pair must be flagged"
    torch.testing.assert_close(loss.double(), ref.loss.detach(), rtol=1e-5, atol=1e-6)


def moco_cross_entropy(q, k, queue, qids, uids, tau):
    zq, zk = F.normalize(q, dim=1), F.normalize(k, dim=1)
    l_pos = (zq * zk).sum(1, keepdim=True)
    l_neg = (zq @ queue.T).masked_fill(qids[:, None] == uids[None, :], float("-inf"))
    logits = torch.cat([l_pos, l_neg], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))


@pytest.mark.parametrize("override", [{"alpha": 0.0}, {"threshold": math.inf}])
@pytest.mark.parametrize("selection", ["global", "per_anchor"])
def test_moco_no_calibration_is_plain_moco(override, selection):
    base = dict(temperature=0.2, alpha=1.0, threshold=0.9, selection=selection, topk=2)
    data, ref = find_moco(base, require=gate_mixed)
    queries, keys, queue, qids, uids = data
    q1, k1 = queries.clone().requires_grad_(True), keys.clone().requires_grad_(True)
    q2, k2 = queries.clone().requires_grad_(True), keys.clone().requires_grad_(True)
    loss, info = false_loss_moco(q1, k1, queue, query_ids=qids, queue_ids=uids, **{**base, **override})
    want = moco_cross_entropy(q2, k2, queue, qids, uids, 0.2)
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-6)
    g1 = torch.autograd.grad(loss, (q1, k1))
    g2 = torch.autograd.grad(want, (q2, k2))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_moco_default_temperature():
    data, _ = find_moco(dict(temperature=0.2, selection="global"))
    queries, keys, queue, qids, uids = data
    loss, _ = false_loss_moco(queries, keys, queue, query_ids=qids, queue_ids=uids, alpha=0.0)
    want = moco_cross_entropy(queries, keys, queue, qids, uids, 0.2)
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-6)


# ============================================================================================ 10. bad arguments


def _batch():
    return make_batch(4, seed=0, n_dup=2)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(alpha=-0.1), "alpha"),
        (dict(alpha=1.1), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-0.5), "temperature"),
        (dict(selection="nearest"), "selection"),
        (dict(selection="per_anchor", topk=0), "topk"),
        (dict(topk=-1, selection="per_anchor"), "topk"),
    ],
)
def test_false_loss_bad_arguments(kw, match):
    emb, ids = _batch()
    with pytest.raises(ValueError, match=match):
        false_loss(emb, ids, **kw)


def test_false_loss_bad_ids_and_shapes():
    emb, ids = _batch()
    M = emb.shape[0]
    bad = ids.clone()
    other = next(v for v in ids.tolist() if v != ids[0].item())
    bad[ids == ids[0]] = other  # one id now appears four times
    with pytest.raises(ValueError, match="sample_ids"):
        false_loss(emb, bad)
    triple = ids.clone()
    j = next(j for j in range(M) if triple[j] != triple[0])
    triple[j] = triple[0]  # id[0] appears three times, id[j] once
    with pytest.raises(ValueError, match="sample_ids"):
        false_loss(emb, triple)
    with pytest.raises(ValueError, match="sample_ids"):
        false_loss(emb, torch.arange(M))  # every id once
    with pytest.raises(ValueError, match="sample_ids|embeddings"):
        false_loss(emb, ids[:-2])  # length mismatch
    with pytest.raises(ValueError, match="embeddings"):
        false_loss(emb[:, 0], ids)  # not 2-D
    with pytest.raises(ValueError, match="sample_ids"):
        info_nce(emb, triple)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(emb, ids, temperature=0.0)
    with pytest.raises(ValueError, match="sample_ids|embeddings"):
        info_nce(emb, ids[:-2])


def test_the_function_refuses_the_thresholds_the_config_refuses():
    emb, ids = _batch()
    for t in (1.5, 2.0, 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
            false_loss(emb, ids, threshold=t)
    with pytest.raises(ValidationError, match="threshold"):
        PretrainConfig.model_validate({"loss": {"threshold": 1.5}})
    off, info = false_loss(emb, ids, threshold=math.inf)  # the one value beyond the config's: FNSD switched off
    assert info.num_calibrated == 0 and torch.allclose(off, info_nce(emb, ids)[0])
    loss, _ = false_loss(emb, ids, threshold=1.0)
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(alpha=2.0), "alpha"),
        (dict(temperature=0.0), "temperature"),
        (dict(selection="bogus"), "selection"),
        (dict(selection="per_anchor", topk=0), "topk"),
    ],
)
def test_moco_bad_arguments(kw, match):
    queries, keys, queue, qids, uids = make_moco(seed=0)
    with pytest.raises(ValueError, match=match):
        false_loss_moco(queries, keys, queue, query_ids=qids, queue_ids=uids, **kw)


def test_moco_bad_shapes():
    queries, keys, queue, qids, uids = make_moco(seed=0)
    with pytest.raises(ValueError, match="keys|queries"):
        false_loss_moco(queries, keys[:-1], queue, query_ids=qids, queue_ids=uids)
    with pytest.raises(ValueError, match="queue"):
        false_loss_moco(queries, keys, queue[:, :-1], query_ids=qids, queue_ids=uids)
    with pytest.raises(ValueError, match="query_ids|queries"):
        false_loss_moco(queries, keys, queue, query_ids=qids[:-1], queue_ids=uids)
    with pytest.raises(ValueError, match="queue_ids|queue"):
        false_loss_moco(queries, keys, queue, query_ids=qids, queue_ids=uids[:-1])
