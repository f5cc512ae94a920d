"""The Overview page on a fresh machine: the shipped models and the scenes their scores are on, in a line each."""
from __future__ import annotations

from pathlib import Path

from tests.pages import open_page


def test_each_shipped_score_names_its_unseen_scenes_in_a_few_words(empty_store: Path) -> None:
    at = open_page("overview")
    assert not at.exception
    table = next(t.value for t in at.table if "on" in t.value)  # static: its cells wrap, every column in view
    assert list(table.columns) == ["kind", "encoder", "mIoU", "on", "domain", "size (MB)", "classes"]
    on = dict(zip(table.index, table["on"]))
    assert table.loc["shipped: dubai_seg", "mIoU"] == "53.1\u00a0%"
    assert table.loc["shipped: deepglobe_seg", "classes"].startswith("urban land, agriculture land, rangeland")
    # Dubai's 9 test images are the images of one scene, its tile 3; DeepGlobe's 3 scenes are named in full
    assert on["shipped: dubai_seg"] == "test: 9 images of 1 scene (tile_3)"
    assert on["shipped: deepglobe_seg"] == "test: 3 scenes (train/104113, train/180902, train/3484)"
    assert on["shipped: synthetic_seg"] == "test: 200 scenes"  # three names of 200 said nothing and hid the domain
    assert "Start here" in [s.value for s in at.subheader]


def test_the_models_table_lists_the_shipped_models_and_the_newest_runs_only(populated_store: Path,
                                                                            monkeypatch) -> None:
    """A static table grows with every run: the shipped models and 8 of the runs' newest, then a line."""
    import dataclasses

    from core.store import catalog

    at = open_page("overview")
    table = next(t.value for t in at.table if "on" in t.value)
    assert sum(m.startswith("run: ") for m in table.index) == 3 and not any("more model" in c.value for c in at.caption)
    models = catalog.segmentation_models()
    more = [dataclasses.replace(m, label=f"{m.label}-{k}") for m in models if "run:" in m.label for k in range(9)]
    monkeypatch.setattr(catalog, "segmentation_models", lambda: more + models)  # 9 newer models of runs
    at = open_page("overview")
    table = next(t.value for t in at.table if "on" in t.value)
    assert sum(m.startswith("run: ") for m in table.index) == 8
    assert table.index[-1] == "shipped: synthetic_false_encoder"  # the shipped models all stay
    assert any(c.value.startswith("And ") and "more model(s) of runs" in c.value for c in at.caption)


def test_a_runs_score_on_scenes_its_encoder_had_read_is_marked_in_the_models_table(populated_store: Path,
                                                                                    monkeypatch) -> None:
    """A review found such a score marked on the Fine-tune page only; here it read as any other test score."""
    import dataclasses

    from core.store import catalog
    from core.store.run_summary import NOT_UNSEEN, test_not_unseen

    models = catalog.segmentation_models()
    run = next(m for m in models if m.label.startswith("run: ") and m.test)
    leaky = dataclasses.replace(run, label=f"{run.label}-leaky", test={**run.test,
                                "not_unseen": "model.init has read 3 of its test scenes (s1, ...) before"})
    clean = dataclasses.replace(run, label=f"{run.label}-clean",
                                test={k: v for k, v in run.test.items() if k != "not_unseen"})
    monkeypatch.setattr(catalog, "segmentation_models", lambda: [*models, leaky, clean])
    at = open_page("overview")
    table = next(t.value for t in at.table if "on" in t.value)
    assert table.loc[leaky.label, "on"].endswith(f"⚠️ {NOT_UNSEEN}")
    assert NOT_UNSEEN not in table.loc[clean.label, "on"]
    # the store's own run: its encoder read its validation scenes only, so its test score is still an unseen one
    assert "of its val scenes" in run.test["not_unseen"] and NOT_UNSEEN not in table.loc[run.label, "on"]
    assert test_not_unseen({"not_unseen": "dubai: the test images share 4 folder(s) with training images (tile_2)"})
    assert not test_not_unseen({"not_unseen": "model.init has read 10 of its val scenes (s1, ...) before"})


def test_the_not_unseen_mark_reads_the_notes_the_engine_writes() -> None:
    """``test_not_unseen`` reads the words of the engine's own notes: reworded there, the mark would silently go.
    The notes are made here by the functions that write them into test_metrics.json."""
    from types import SimpleNamespace

    from core.data.labeled import neighbours_note
    from core.seg.lineage import pretraining_note
    from core.store.run_summary import test_not_unseen

    scenes = {"train": ["a", "b"], "val": ["v"], "test": ["t1", "t2"]}
    for read, seen in ((["t1", "v"], True), (["t2"], True), (["v"], False)):
        note = pretraining_note({"pretrain_scenes": read}, scenes)
        assert test_not_unseen({"not_unseen": note}) is seen, note
    folders = SimpleNamespace(dataset=SimpleNamespace(table=SimpleNamespace(group_by="file")), name="dubai",
                              scenes={"train": ["tile_2/p1"], "test": ["tile_2/p5", "tile_3/p1"]})
    assert test_not_unseen({"not_unseen": neighbours_note(folders)})
    assert not test_not_unseen({}) and not test_not_unseen(None)


def test_the_runs_at_a_glance_fit_with_their_result_in_one_column(populated_store: Path) -> None:
    """With a metric and a value column, the start time was pushed off the page (a review)."""
    at = open_page("overview")
    glance = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert list(glance.columns) == ["run", "kind", "state", "method", "progress", "result", "started"]
    ft = glance[glance["kind"] == "finetune"]["result"].tolist()
    assert ft and all(r.endswith("test mIoU)") and "%" in r for r in ft), ft
