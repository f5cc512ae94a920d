"""What a user names is found: ``model.init`` a pretraining run by its folder, its name or ``runs/<name>`` (as
``--resume`` does), ``--checkpoint`` and ``core.evaluate`` a shipped model by the name reports call it."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError
from core.seg.encoder_init import resolve_init
from core.store.runs import NotARunError


def test_a_run_is_found_by_its_folder_its_name_and_runs_slash_name(tmp_path: Path, monkeypatch) -> None:
    """A review: `model.init=<run name>` and the README's `model.init=runs/<run>` failed with FALSE_WB_RUNS set,
    while --resume, export and fn-report took the bare name."""
    from core.store.runs import create_run

    root = tmp_path / "elsewhere"
    run = create_run("tiny", "method: simclr\n", root, state="completed")
    encoder = run.checkpoint_dir / "encoder.safetensors"
    encoder.parent.mkdir(parents=True, exist_ok=True)
    encoder.write_bytes(b"weights")
    monkeypatch.setenv("FALSE_WB_RUNS", str(root))
    monkeypatch.chdir(tmp_path)
    for init in (str(run.path), run.id, f"runs/{run.id}", str(encoder)):
        assert resolve_init(init) == encoder, init
    assert resolve_init("random") is None
    with pytest.raises(ConfigError, match=f"no such run folder or checkpoint: nothing-here, nor a run of that name in "
                                          f"{root}"):
        resolve_init("nothing-here")
    (root / "empty-run").mkdir()
    with pytest.raises(NotARunError, match="model.init: not a run folder \\(no config.yaml and status.json\\)"):
        resolve_init("empty-run")
    (encoder).unlink()
    with pytest.raises(NotARunError, match="not a pretraining run with an encoder checkpoint"):
        resolve_init(run.id)


def test_model_init_takes_the_name_a_run_was_made_with(tmp_path: Path, monkeypatch) -> None:
    """A review: `false-wb runs` and `--resume` took a run's `name=`, `model.init` only its folder's name."""
    from core.store.runs import create_run

    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path))
    made = create_run("dglc-false", "method: simclr\n", tmp_path, state="completed")
    (made.checkpoint_dir / "encoder.safetensors").write_bytes(b"weights")
    assert resolve_init("dglc-false") == made.checkpoint_dir / "encoder.safetensors"
    twice = [create_run("twice", "method: simclr\n", tmp_path, state="completed") for _ in range(2)]
    with pytest.raises(ConfigError,
                       match=f"model.init: 2 runs are named 'twice' in {tmp_path}: {twice[1].id}, {twice[0].id}; give"):
        resolve_init("twice")


def test_a_shipped_model_is_found_by_its_name_and_a_path_stays_a_path(tmp_path: Path, monkeypatch) -> None:
    """A review: `--checkpoint deepglobe_seg` said "checkpoint not found", while reports call it deepglobe_seg."""
    from core.store.catalog import SHIPPED, named_checkpoint

    monkeypatch.chdir(tmp_path)
    assert named_checkpoint("deepglobe_seg") == SHIPPED / "deepglobe_seg.safetensors"
    assert named_checkpoint("nosuch_seg") == Path("nosuch_seg")  # "checkpoint not found: nosuch_seg" follows
    (tmp_path / "deepglobe_seg").write_bytes(b"")  # a file of that name here is what the user means
    assert named_checkpoint("deepglobe_seg") == Path("deepglobe_seg")
    assert named_checkpoint("sub/dubai_seg") == Path("sub/dubai_seg")
    from core.store.checkpoint import not_found  # a name close to a shipped one is answered with it

    assert not_found("dubai") == ("checkpoint not found: dubai (did you mean dubai_seg? a shipped model is named "
                                  "without .safetensors)")
    assert not_found("xyz").startswith("checkpoint not found: xyz (the shipped models: deepglobe_seg, dubai_seg")
    assert not_found("sub/dubai.safetensors") == "checkpoint not found: sub/dubai.safetensors"
