"""A small but real run store for page tests: made once per session by the engine itself.

Contents (under ``<base>/runs``, synthetic data cached under ``<base>/data``):
  - ``*-tiny-false``   a completed SimCLR+FALSE pretraining run (16 steps) with flagged pairs in fns.jsonl and the
                       kNN monitor's records
  - ``*-tiny-infonce`` a completed SimCLR (InfoNCE) pretraining run
  - ``*-tiny-ft``      a completed fine-tuning run from the FALSE run (best.safetensors, confusion, test metrics)
  - ``*-broken``       a folder with an unreadable status.json and config.yaml
  - ``*-died``         a run whose status says running but whose process is gone
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.seg.finetune_cli import main as finetune_main
from core.ssl.pretrain import main as pretrain_main
from core.store.runs import atomic_write_bytes, create_run, list_runs

ROOT = Path(__file__).resolve().parent.parent
TINY_PRE = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--no-progress", "model.proj_hidden=32",
            "model.proj_dim=16", "data.num_tiles=48", "data.tile_size=64", "data.image_size=32",
            "train.batch_size=16", "train.max_steps=6", "train.ckpt_every=3", "train.log_every=1",
            "train.optimizer=adamw", "loss.threshold=0.5"]
TINY_FT = ["--config", str(ROOT / "configs/finetune_demo_cpu.yaml"), "--no-progress", "data.num_tiles=48",
           "data.tile_size=64", "data.crop_size=64", "data.val_fraction=0.2", "data.test_fraction=0.2",
           "data.label_fraction=1.0", "train.batch_size=4", "train.max_steps=4", "train.eval_every=2",
           "train.log_every=1"]


def build_store(base: Path) -> Path:
    """Make the store under ``base`` (FALSE_WB_RUNS / FALSE_WB_DATA must point there) and return the runs root."""
    runs = base / "runs"
    assert pretrain_main([*TINY_PRE, "name=tiny-false", "loss.name=false", "train.max_steps=16",
                          "train.log_every=4", "train.knn_every=8"]) == 0  # logged every 4th step: the pair
    # counts are of every step; the kNN monitor at steps 8 and 16
    assert pretrain_main([*TINY_PRE, "name=tiny-infonce", "loss.name=info_nce"]) == 0
    false_run = next(r for r in list_runs(runs) if r.id.endswith("tiny-false"))
    assert finetune_main([*TINY_FT, f"model.init={false_run.path}", "name=tiny-ft"]) == 0
    broken = create_run("broken", "method: simclr\n", runs)
    atomic_write_bytes(broken.path / "status.json", b"{not json")
    atomic_write_bytes(broken.path / "config.yaml", b"method: [unclosed\n")
    died = create_run("died", (false_run.path / "config.yaml").read_text(), runs, kind="pretrain")
    died.write_status(state="running", pid=2**22 + 12345, total_steps=10, step=3)
    return runs


def _link_weights(src: str, dst: str) -> None:
    if src.endswith(".safetensors"):
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def copy_store(src_base: Path, dst_base: Path) -> Path:
    """A private copy for a test that changes the store (delete, launch). Weights are hard links, not copies (the store
    is 0.5 GB, copied by a dozen tests): the code only ever replaces a .safetensors file whole (an atomic
    ``os.replace``), which gives the copy a new file and leaves the shared one as it was."""
    shutil.copytree(src_base / "runs", dst_base / "runs", symlinks=True, copy_function=_link_weights)
    if not (dst_base / "data").exists():
        (dst_base / "data").symlink_to(src_base / "data")
    return dst_base / "runs"


def deepglobe_encoder_store(store_base: Path, tmp_path: Path, monkeypatch, data: dict, data_dir: str = "data"):
    """A private copy of the store whose tiny-infonce encoder's card says it was pretrained on DeepGlobe scenes
    (``data``: the card's data settings beyond name, root, tile and view size; the folder is never read unless a
    test puts scenes there). Returns the run; FALSE_WB_RUNS and FALSE_WB_DATA (``tmp_path / data_dir``) point at the
    copy."""
    import json

    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / data_dir))
    run = next(r for r in list_runs(runs) if r.id.endswith("tiny-infonce"))
    card_path = run.checkpoint_dir / "encoder.json"
    card = json.loads(card_path.read_text())
    card["config"]["data"] = {"name": "deepglobe", "root": str(tmp_path / "dg"), "tile_size": 96, "image_size": 32,
                              **data}
    card_path.write_text(json.dumps(card))
    return run
