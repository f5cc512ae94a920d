"""On a GPU the loader thread makes a step's views on a side CUDA stream (issue 28, item 4): they must be the very
views the step would have made itself. Runs where CUDA is (``bench/gpu_check.sh`` runs it); skipped elsewhere."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from core.config import config_to_yaml, load_config
from core.ssl.pretrain import Trainer
from core.store.runs import create_run

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh)")


def test_views_from_the_side_stream_are_the_steps_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    cfg = load_config(ROOT / "configs/demo_cpu.yaml", [
        "model.encoder=resnet18", "model.proj_hidden=16", "model.proj_dim=8", "data.num_tiles=24",
        "data.tile_size=40", "data.image_size=32", "train.batch_size=8", "train.knn_every=0", "train.max_steps=4",
        "train.device=cuda"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, create_run("feed", config_to_yaml(cfg), Path(tmp)), progress=False)
        for step in range(3):
            views, ids, _ = trainer.views(step)  # the loader's, from step 1 on made one step ahead
            feed = trainer.feed
            assert feed.pending is not None and feed.side_stream is not None
            feed.pending[1].result()  # the loader is idle now: its side stream can be set aside
            side, feed.side_stream = feed.side_stream, None
            try:  # what the step would make itself, on its own stream
                own = feed.augmented(feed.prepare(step))
            finally:
                feed.side_stream = side
            assert torch.equal(views, own.views) and torch.equal(ids, own.view_ids)
