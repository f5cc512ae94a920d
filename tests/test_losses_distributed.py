"""Data-parallel semantics of ``core.ssl.losses`` (FALSE_SPEC.md, "What this project builds").

Two CPU processes (gloo) each pass their half of a fixed batch with ``distributed=True``.  The spec promises that
W ranks give the same loss and the same flagged pairs as one process on the gathered batch:

* mean over ranks of the rank losses == the single-process loss,
* rank r's ``local.grad`` == world_size * (single-process grad of its rows) (DDP then averages),
* every rank's info lists the complete flagged pairs with GLOBAL row indices (rank r's row i = r * M_local + i).
"""

from __future__ import annotations

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core.ssl.losses import Hints, dcl_loss, false_loss, info_nce

WORLD = 2
TIMEOUT_S = 60

CONFIGS = {
    "info_nce": None,
    "global": dict(temperature=0.5, alpha=1.0, threshold=0.9, selection="global"),
    "global_sym_a05": dict(temperature=0.5, alpha=0.5, threshold=0.9, selection="global", symmetric=True),
    "per_anchor_k2": dict(temperature=0.5, alpha=1.0, threshold=0.9, selection="per_anchor", topk=2),
    "per_anchor_k1_sym": dict(temperature=0.2, alpha=0.9, threshold=0.9, selection="per_anchor", topk=1,
                              symmetric=True),
    # issue 27: the other detectors and treatments, and DCL
    "nearest_eliminate_k2": dict(temperature=0.5, detector="nearest", treatment="eliminate", topk=2),
    "nearest_attract_sim": dict(temperature=0.5, detector="nearest", treatment="attract", similarity=0.5),
    "support_fncc_sym": dict(temperature=0.5, detector="support", treatment="fncc", topk=2, threshold=0.9,
                             symmetric=True),
    "oracle_attract": dict(temperature=0.5, detector="oracle", treatment="attract"),
    "dcl": "dcl",
}
CLASSES = 3  # the oracle's classes: data set id mod 3


def call(kw, emb, ids, support, distributed: bool):
    """One loss of CONFIGS on (this rank's part of) the batch."""
    if kw is None:
        return info_nce(emb, ids, temperature=0.5, distributed=distributed)
    if kw == "dcl":
        return dcl_loss(emb, ids, 0.5, tau_plus=0.1, distributed=distributed)
    hints = Hints(support=support if kw.get("detector") == "support" else None,
                  class_of_id=torch.arange(10_000) % CLASSES)
    return false_loss(emb, ids, distributed=distributed, hints=hints, **kw)


def make_batch(n_images: int = 12, dim: int = 16, seed: int = 1234):
    """Shuffled views with a cluster of near-duplicate images (different ids) so that the FNCC gate opens."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n_images, dim, generator=g, dtype=torch.float64)
    n_dup = 4
    base[:n_dup] = torch.randn(dim, generator=g, dtype=torch.float64) + 0.15 * torch.randn(
        n_dup, dim, generator=g, dtype=torch.float64
    )
    sigma = 0.05 + 0.45 * torch.rand(n_images, 1, generator=g, dtype=torch.float64)
    sigma[:n_dup] = 0.01
    v1 = base + sigma * torch.randn(n_images, dim, generator=g, dtype=torch.float64)
    v2 = base + sigma * torch.randn(n_images, dim, generator=g, dtype=torch.float64)
    views = torch.cat([v1, v2]) * (0.5 + 2 * torch.rand(2 * n_images, 1, generator=g, dtype=torch.float64))
    img_ids = torch.randperm(10_000, generator=g)[:n_images]
    ids = torch.cat([img_ids, img_ids])
    perm = torch.randperm(2 * n_images, generator=g)
    return views[perm].float().contiguous(), ids[perm].long().contiguous()


def _worker(rank: int, world: int, init_method: str, data_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=init_method, rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    try:
        data = torch.load(data_path)
        emb, ids, support = data["emb"], data["ids"], data["support"]
        m = emb.shape[0] // world
        sl = slice(rank * m, (rank + 1) * m)
        results = {}
        for name, kw in CONFIGS.items():
            local = emb[sl].clone().requires_grad_(True)
            loss, info = call(kw, local, ids[sl], support[:, sl], distributed=True)
            loss.backward()
            results[name] = {
                "loss": loss.detach().clone(),
                "grad": local.grad.detach().clone(),
                "anchor": info.anchor.clone(),
                "candidate": info.candidate.clone(),
                "calibrated": info.calibrated.clone(),
                "mirrored": info.mirrored.clone(),
                "num_flagged": int(info.num_flagged),
                "num_calibrated": int(info.num_calibrated),
            }
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _pairs(anchor, candidate, calibrated, mirrored) -> list[tuple]:
    return sorted(zip(anchor.tolist(), candidate.tolist(), [bool(v) for v in calibrated.tolist()],
                      [bool(v) for v in mirrored.tolist()]))


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    tmp = tmp_path_factory.mktemp("ddp")
    emb, ids = make_batch()
    m = emb.shape[0] // WORLD
    # both views of some ids must sit on different ranks
    rank_of = {}
    split = 0
    for r in range(emb.shape[0]):
        i = ids[r].item()
        if i in rank_of and rank_of[i] != r // m:
            split += 1
        rank_of.setdefault(i, r // m)
    assert split >= 2, "test setup: no positive pair straddles the ranks"
    data_path = str(tmp / "data.pt")
    support = emb[None] + 0.3 * torch.randn(2, *emb.shape, generator=torch.Generator().manual_seed(9))
    torch.save({"emb": emb, "ids": ids, "support": support}, data_path)
    init_method = f"file://{tmp / 'store'}"  # FileStore: no port to race for
    mp.spawn(_worker, args=(WORLD, init_method, data_path, str(tmp)), nprocs=WORLD, join=True)
    per_rank = [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]
    return emb, ids, support, per_rank


@pytest.mark.slow  # a whole run or process start: the full suite, not the fast tier (kept under 3 minutes)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_distributed_equals_single_process(distributed_run, name):
    emb, ids, support, per_rank = distributed_run
    kw = CONFIGS[name]
    x = emb.clone().requires_grad_(True)
    loss, info = call(kw, x, ids, support, distributed=False)
    (grad,) = torch.autograd.grad(loss, x)

    ranks = [res[name] for res in per_rank]
    mean_loss = torch.stack([r["loss"] for r in ranks]).mean()
    torch.testing.assert_close(mean_loss, loss.detach(), rtol=1e-5, atol=1e-5)
    local_grads = torch.cat([r["grad"] for r in ranks]) / WORLD
    torch.testing.assert_close(local_grads, grad, rtol=1e-5, atol=1e-5)

    want = _pairs(info.anchor, info.candidate, info.calibrated, info.mirrored)
    for r, res in enumerate(ranks):
        got = _pairs(res["anchor"], res["candidate"], res["calibrated"], res["mirrored"])
        assert got == want, f"rank {r}: flagged pairs differ from the single-process run"
        assert res["num_flagged"] == info.num_flagged and res["num_calibrated"] == info.num_calibrated

    if kw is None or kw == "dcl":
        assert info.num_flagged == 0
    else:
        assert info.num_calibrated > 0, "test setup: the gate should open on the near-duplicates"
    if isinstance(kw, dict) and (kw.get("selection") == "per_anchor" or kw.get("detector", "fnsd") != "fnsd"):
        m = emb.shape[0] // WORLD
        cross = [(a, c) for a, c, cal, _ in want if cal and a // m != c // m]
        assert cross, "test setup: no calibrated pair crosses the ranks"
