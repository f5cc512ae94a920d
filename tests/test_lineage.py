"""What a model's encoder was pretrained on travels with it, so that a test score is called unseen only when it is
(the review: the shipped synthetic model's card said "never saw in any stage" of test tiles its encoder had read)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from core.data.folder import ImageFolderTiles
from core.seg.lineage import (KEY, init_pretrain_scenes, pretraining_note, run_pretrain_scenes, seen_in_pretraining,
                              unseen_words)
from core.ssl.run_start import data_record
from core.store.checkpoint import write_safetensors

ROOT = Path(__file__).resolve().parent.parent


def _weights(path: Path, card: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, {"w": torch.zeros(1)}, {"card": json.dumps(card)})
    return path


def test_an_unlabeled_folder_records_every_image_it_read_and_an_unknown_set_records_nothing(tmp_path: Path) -> None:
    """Until now a folder's pretraining recorded "no scenes" (an empty list), which would read as "saw none"."""
    for rel in ("dubai/tile_3/image_part_001.jpg", "deepglobe/104113_sat.png"):
        (tmp_path / "imgs" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "imgs" / rel)
    folder = ImageFolderTiles(tmp_path / "imgs", tile_size=32, cache_root=tmp_path / "cache", progress=False)
    cfg = SimpleNamespace(data=SimpleNamespace(name="folder"))
    assert data_record(cfg, folder)[KEY] == ["deepglobe/104113_sat", "dubai/tile_3/image_part_001"]
    assert data_record(cfg, [1, 2])[KEY] is None  # a set that cannot name what it holds: not known, not "none"


def test_the_record_is_found_on_the_card_or_in_the_run_folder_else_unknown(tmp_path: Path) -> None:
    assert init_pretrain_scenes(None) == []  # a random encoder
    assert init_pretrain_scenes(_weights(tmp_path / "enc.safetensors", {KEY: ["a", "b"]})) == ["a", "b"]
    run = tmp_path / "run"
    own = _weights(run / "checkpoints" / "encoder.safetensors", {"kind": "encoder"})
    assert init_pretrain_scenes(own) is None and run_pretrain_scenes(run) is None  # no data.json
    (run / "data.json").write_text(json.dumps({KEY: [], "pretrain_splits": None}))  # a folder run of before
    assert run_pretrain_scenes(run) is None  # its [] named nothing: unknown, not "pretrained on none"
    (run / "data.json").write_text(json.dumps({KEY: ["s1"]}))
    assert init_pretrain_scenes(own) == ["s1"] and run_pretrain_scenes(run) == ["s1"]
    assert init_pretrain_scenes(_weights(tmp_path / "old.safetensors", {"kind": "encoder"})) is None
    foreign = tmp_path / "foreign.safetensors"  # written by safetensors itself elsewhere: its metadata is not ours
    write_safetensors(foreign, {"w": torch.zeros(1)}, {"format": "pt"})
    assert init_pretrain_scenes(foreign) is None  # unknown (it raised, and fine-tuning from such a file failed)
    # a second round from a segmentation model: what it was fine-tuned and validated on counts as read too
    seg = {"kind": "segmentation", KEY: ["p1"], "evaluation": {"training_scenes": ["t1", "t2"]},
           "domain": {"validation_scenes": ["v1"]}}
    assert init_pretrain_scenes(_weights(tmp_path / "seg.safetensors", seg)) == ["p1", "t1", "t2", "v1"]
    unnamed = {**seg, "evaluation": {}}  # its training scenes not named: unknown, not "pretraining only"
    assert init_pretrain_scenes(_weights(tmp_path / "seg2.safetensors", unnamed)) is None


def test_seen_scenes_are_matched_through_a_folder_of_copies() -> None:
    card = {KEY: ["dubai/tile_1/image_part_001", "dubai/tile_3/image_part_002", "deepglobe/104113_sat"]}
    tests = ["tile_3/image_part_001", "tile_3/image_part_002"]
    assert seen_in_pretraining(card, tests) == ["tile_3/image_part_002"]  # tile_1's image 1 is not tile_3's
    assert seen_in_pretraining({KEY: ["train/104113"]}, ["train/104113", "train/3484"]) == ["train/104113"]
    assert seen_in_pretraining({"config": {"model": {"init": "random"}}}, tests) == []
    assert seen_in_pretraining({"config": {"model": {"init": "runs/x"}}}, tests) is None


def test_the_words_for_a_test_split_and_the_fine_tuning_warning() -> None:
    assert unseen_words([], 3) == ("scenes it never saw", None)
    words, note = unseen_words(["t1", "t2", "t3", "t4"], 9)
    assert words == "scenes fine-tuning never saw" and "had read 4 of these 9 scenes before (t1, t2, t3, ...;" in note
    words, note = unseen_words(None, 9)
    assert words == "scenes fine-tuning never saw" and "does not record" in note
    card = {KEY: ["v1", "t2"]}
    note = pretraining_note(card, {"train": ["x"], "val": ["v1"], "test": ["t1", "t2"]})
    assert note.startswith("model.init has read 1 of its test scenes (t2) and 1 of its val scenes (v1) before")
    assert "Either that pretraining read them (pretrain with data.pretrain_splits=[train] on this data set, or on a " \
           "folder without them), or this run splits the scenes otherwise than it did (keep its data.seed" in note
    assert "[train] (or [train, val])" in pretraining_note(card, {"test": ["t2"]})  # validation scenes not read
    assert pretraining_note(card, {"test": ["t1"]}) is None and pretraining_note({}, {"test": ["t1"]}) is None
    only_val = pretraining_note({KEY: ["v1"]}, {"val": ["v1"], "test": ["t1"]})
    assert "1 of its val scenes (v1)" in only_val and "its test scenes are unseen" in only_val
    assert "[train, val]" not in only_val  # the advice for a test leak, not for validation alone


def test_the_model_table_says_never_saw_in_any_stage_only_when_no_stage_did() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from model_table import _scored_words
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert _scored_words({"split": "test", "seen_in_pretraining": []}) == "test data it never saw in any stage"
    assert "had read 2 of them before" in _scored_words({"split": "test", "seen_in_pretraining": ["a", "b"]})
    assert "not recorded" in _scored_words({"split": "test"})
    assert "never saw" not in _scored_words({"split": "val", "seen_in_pretraining": []})


def test_an_encoder_given_to_evaluate_says_to_fine_tune_it_first(tmp_path: Path, capsys) -> None:
    """The review: a pretraining run's folder led to its encoder file, which was then refused by its kind alone."""
    from core.seg.evaluate import main as evaluate_main

    encoder = _weights(tmp_path / "encoder.safetensors", {"kind": "encoder"})
    assert evaluate_main([str(encoder), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is not a segmentation checkpoint (its card says kind='encoder'); it is a pretrained encoder" in err
    assert "fine-tune it first (python -m core.finetune" in err
    run = tmp_path / "run"  # the run folder itself: no circle through its encoder file (a review)
    _weights(run / "checkpoints" / "encoder.safetensors", {"kind": "encoder"})
    assert evaluate_main([str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "it is a pretraining run: its encoder is no segmentation model, fine-tune it first" in err
    assert "give " not in err
    bare = _weights(tmp_path / "bare.safetensors", None)  # no card at all: said so, not "kind=None"
    assert evaluate_main([str(bare), "--no-progress"]) == 2
    assert "(it has no card: not made by the workbench)" in capsys.readouterr().err


def test_a_pretraining_that_goes_on_from_another_encoder_records_what_both_read(tmp_path: Path) -> None:
    """``model.weights=<run>/checkpoints/encoder.safetensors`` (the README's way to go on with new settings): the
    first run's scenes count too, and an unknown first record makes the whole unknown."""
    class Tiles(list):
        split_scenes, pretrain_splits, has_labels = {"train": ["b"], "test": ["t"]}, ["train"], True

    def cfg(weights: Path | None) -> SimpleNamespace:
        return SimpleNamespace(data=SimpleNamespace(name="x"), model=SimpleNamespace(weights=weights))

    assert data_record(cfg(None), Tiles([1]))[KEY] == ["b"]
    known = _weights(tmp_path / "first.safetensors", {"kind": "encoder", KEY: ["a", "t"]})
    assert data_record(cfg(known), Tiles([1]))[KEY] == ["a", "b", "t"]
    unknown = _weights(tmp_path / "old.safetensors", {"kind": "encoder"})
    assert data_record(cfg(unknown), Tiles([1]))[KEY] is None


def test_an_encoder_of_a_run_still_training_is_said_to_be_its_last_checkpoints(tmp_path: Path) -> None:
    """A review fine-tuned from a half-trained pretraining run without a word."""
    import os

    import pytest

    from core.seg.encoder_init import resolve_init
    from core.store.runs import create_run

    run = create_run("live", "name: live\n", tmp_path, kind="pretrain", state="running", pid=os.getpid(),
                     step=40, total_steps=300)
    _weights(run.path / "checkpoints" / "encoder.safetensors", {"kind": "encoder"})
    with pytest.warns(UserWarning, match=r"model.init: run .*live is still training \(step 40 of 300\): its encoder "
                                         "is the one of its last checkpoint"):
        assert resolve_init(str(run.path)) == run.path / "checkpoints" / "encoder.safetensors"
    run.write_status(state="completed")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_init(str(run.path))  # finished: nothing to say
