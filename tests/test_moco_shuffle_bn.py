"""MoCo v2's shuffle-BN (issue 28, item 3): a key no longer depends on the samples that share its query's sub-batch.

Without it, BatchNorm runs over the whole key batch, so every key carries the statistics of its own query's batch:
the shortcut the MoCo paper closes. These tests perturb chosen samples and watch which keys and queries move.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core.config import ConfigError, load_config, upgrade_run_config
from core.ssl.models import MoCoV2
from core.ssl.pretrain import main
from core.ssl.shuffle_bn import (KeyShuffle, SplitBatchNorm1d, SplitBatchNorm2d, bn_splits, key_permutation,
                                 split_batchnorm)
from core.store.runs import list_runs

B, SPLITS, SEED, STEP = 8, 2, 5, 3
ROOT = Path(__file__).resolve().parent.parent


def moco(splits: int | None = SPLITS) -> MoCoV2:
    torch.manual_seed(0)
    model = MoCoV2("resnet18", proj_hidden=16, proj_dim=8, queue_size=16)
    if splits:
        split_batchnorm(model, splits)
    return model.train()


def views(seed: int = 1) -> torch.Tensor:
    return torch.rand(B, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def groups() -> tuple[list[set[int]], list[set[int]]]:
    """The query sub-batches (sample i in i % SPLITS) and the key sub-batches (position p of the shuffled batch in
    p % SPLITS, position p holding image perm[p])."""
    perm = key_permutation(B, SEED, STEP).tolist()
    query = [{i for i in range(B) if i % SPLITS == s} for s in range(SPLITS)]
    key = [{perm[p] for p in range(B) if p % SPLITS == s} for s in range(SPLITS)]
    return query, key


def a_leaking_pair() -> tuple[int, int, int]:
    """An image i, an image j sharing i's query sub-batch but not its key sub-batch, and one sharing its key one."""
    query, key = groups()
    for i in range(B):
        qi = next(g for g in query if i in g)
        ki = next(g for g in key if i in g)
        outside = sorted(qi - ki - {i})
        inside = sorted(ki - {i})
        if outside and inside:
            return i, outside[0], inside[0]
    raise AssertionError("test setup: no image whose query and key sub-batches differ")


def test_a_key_does_not_move_with_the_samples_of_its_query_sub_batch() -> None:
    i, j, mate = a_leaking_pair()
    x = views()
    nudged = x.clone()
    nudged[j] += 0.5  # j shares i's query sub-batch, not its key sub-batch
    shuffled = KeyShuffle(SEED)
    model = moco()
    with torch.no_grad():
        k, k_nudged = shuffled.keys(model.keys, x, STEP), shuffled.keys(model.keys, nudged, STEP)
    assert torch.equal(k[i], k_nudged[i])
    assert not torch.allclose(k[j], k_nudged[j])  # j's own key did move
    control = x.clone()
    control[mate] += 0.5  # a sample of i's key sub-batch: its statistics are i's, so i's key moves (not vacuous)
    with torch.no_grad():
        assert not torch.allclose(k[i], shuffled.keys(model.keys, control, STEP)[i], atol=1e-4)

    old = moco(splits=None)  # the former way: the whole key batch through one BatchNorm
    with torch.no_grad():
        assert not torch.allclose(old.keys(x)[i], old.keys(nudged)[i], atol=1e-4)  # the leak these tests close


def test_a_query_depends_on_its_own_sub_batch_only() -> None:
    model = moco()
    x = views()
    nudged = x.clone()
    nudged[1] += 0.5  # sub-batch 1 (odd samples); query 0 is in sub-batch 0
    with torch.no_grad():
        q, q_nudged = model(x), model(nudged)
    assert torch.equal(q[0], q_nudged[0]) and torch.equal(q[2], q_nudged[2])
    assert not torch.allclose(q[1], q_nudged[1])


def test_unshuffled_keys_equal_each_key_sub_batch_through_plain_batchnorm() -> None:
    model, plain = moco(), moco(splits=None)
    x = views()
    perm = key_permutation(B, SEED, STEP)
    with torch.no_grad():
        got = KeyShuffle(SEED).keys(model.keys, x, STEP)
        for s in range(SPLITS):
            images = perm[s::SPLITS]  # positions s, s + SPLITS, ... of the shuffled batch
            assert torch.allclose(got[images], plain.keys(x[images]), atol=1e-5)
    assert isinstance(model.key_encoder.bn1, SplitBatchNorm2d) and isinstance(model.key_head.net[1], SplitBatchNorm1d)


def test_split_batchnorm_keeps_the_state_keys_and_eval_is_plain_batchnorm() -> None:
    plain, split = moco(splits=None), moco()
    assert list(plain.state_dict()) == list(split.state_dict())  # checkpoints and exports load either way
    assert not any(p.requires_grad for p in split.key_params())  # the key network stays frozen (DDP, optimizer)
    assert [n for n, p in plain.named_parameters() if p.requires_grad] == \
        [n for n, p in split.named_parameters() if p.requires_grad]
    split.eval()
    plain.load_state_dict(split.state_dict())
    plain.eval()
    x = views()
    with torch.no_grad():
        assert torch.equal(split(x), plain(x))


def test_a_batch_too_small_to_split_is_refused_at_load_naming_the_field() -> None:
    base = ["method=moco", "model.queue_size=32", "train.max_steps=1"]
    with pytest.raises(ConfigError, match="model.moco_bn_splits"):
        load_config(None, [*base, "train.batch_size=3"])
    with pytest.raises(ConfigError, match="model.moco_bn_splits: a MoCo batch of 8"):
        load_config(None, [*base, "train.batch_size=8", "model.moco_bn_splits=3"])
    assert load_config(None, [*base, "train.batch_size=3", "model.moco_shuffle_bn=false"]).train.batch_size == 3
    assert [bn_splits(b, 1, None) for b in (4, 6, 64, 96, 256, 1024)] == [2, 2, 2, 3, 8, 8]
    assert bn_splits(64, 4, None) == 1  # under torchrun the ranks are the split


def test_a_moco_run_says_how_its_keys_met_batchnorm_and_an_old_run_resumes_without_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    tiny = ["--no-progress", "method=moco", "model.encoder=resnet18", "model.proj_hidden=16", "model.proj_dim=8",
            "model.queue_size=16", "data.name=synthetic", "data.num_tiles=16", "data.tile_size=40",
            "data.image_size=32", "train.batch_size=8", "train.optimizer=adamw", "train.max_steps=2",
            "train.knn_every=0"]
    assert main(["--config", str(ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(tmp_path / "runs"), *tiny]) == 0
    (run,) = list_runs(tmp_path / "runs")
    card = json.loads((run.checkpoint_dir / "last.json").read_text())
    assert card["moco_bn"] == "split-batch 2 x 4, keys shuffled"
    old = {"method": "moco", "model": {"encoder": "resnet18"}}
    assert upgrade_run_config(old)["model"]["moco_shuffle_bn"] is False  # written before shuffle-BN: resumes as it ran
    assert "moco_shuffle_bn" not in upgrade_run_config({"method": "simclr", "model": {}})["model"]


# ------------------------------------------------------------------------------------------------------ torchrun
def _worker(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        def gather(t: torch.Tensor) -> torch.Tensor:
            parts = [torch.empty_like(t) for _ in range(world)]
            dist.all_gather(parts, t.contiguous())
            return torch.cat(parts)

        model = moco(splits=None)  # per-rank BatchNorm: the ranks are the split
        x = views()[rank * (B // world):(rank + 1) * (B // world)]
        with torch.no_grad():
            k = KeyShuffle(SEED, rank, world, gather).keys(model.keys, x, STEP)
        torch.save(k, os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_torchrun_ranks_shuffle_their_keys_across_each_other(tmp_path) -> None:
    """Two gloo ranks give the keys of one process that runs each rank's share of the shuffled batch alone."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    world = 2
    mp.spawn(_worker, args=(world, f"file://{tmp_path / 'store'}", str(tmp_path)), nprocs=world, join=True)
    got = torch.cat([torch.load(tmp_path / f"rank{r}.pt") for r in range(world)])
    perm = key_permutation(B, SEED, STEP)
    model, x = moco(splits=None), views()
    with torch.no_grad():
        shares = [model.keys(x[perm[r * (B // world):(r + 1) * (B // world)]]) for r in range(world)]
    expected = torch.cat(shares)[torch.argsort(perm)]
    assert torch.allclose(got, expected, atol=1e-5)
