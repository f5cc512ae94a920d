"""The start page of `streamlit run workbench`: a way in on a fresh machine, the runs at a glance otherwise."""
from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.pages import APP, ROOT, errors, texts


def test_fresh_machine_leads_to_the_demo(empty_store: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and not errors(at)
    assert at.title[0].value == "FALSE workbench"
    assert "Start here" in [s.value for s in at.subheader]
    assert {b.key for b in at.button} >= {"go-segment", "go-pretrain"}
    models = at.table[0].value  # static, its cells wrapped: every column readable at 1,280 px (a review)
    card = json.loads((ROOT / "checkpoints" / "dubai_seg.json").read_text())
    assert models.loc["shipped: dubai_seg", "mIoU"] == f"{100 * card['evaluation']['miou']:.1f}\u00a0%"  # its card's
    assert models.loc["shipped: synthetic_false_encoder", "mIoU"] == "—"  # an encoder has none: a dash, not "None"
    at.button(key="go-segment").click().run()
    assert not at.exception
    assert any("Segment" in t.value for t in at.title)


def test_lists_runs_and_models(populated_store: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and not errors(at)
    runs = at.dataframe[0].value
    assert len(runs) == 5 and any(r.endswith("tiny-ft") for r in runs["run"])
    shown = {r.split(" (")[1].rstrip(")"): r.split(" (")[0] for r in runs["result"] if " (" in r}  # "51.2 % (test mIoU)"
    assert shown["test mIoU"].endswith(" %") and float(shown["last loss"]) > 0, shown  # in percent, as the models'
    assert all(r == "—" or r.endswith(")") for r in runs["result"]), list(runs["result"])  # a figure says what it is
    assert "Start here" not in texts(at)
    models = at.table[0].value
    assert any(m.startswith("run: ") and m.endswith("tiny-ft") for m in models.index)
    assert any(m.endswith("tiny-false") for m in models.index)
    for table in (runs, models):  # missing text is a dash, never "None"
        text = table.select_dtypes(include=["object", "str"])
        assert not text.isna().any().any() and not (text.astype(str) == "None").any().any()


def test_the_runs_page_gives_an_mIoU_in_percent_too(populated_store: Path) -> None:
    from tests.pages import open_page

    at = open_page("runs")
    assert not at.exception and not errors(at)
    table = at.dataframe[0].value
    shown = dict(zip(table["metric"], table["value"]))
    assert shown["test mIoU"].endswith(" %") and float(shown["last loss"]) > 0, shown
    # a tested run's figure is its test score, as the Fine-tune page gives it (not its best validation)
    from core.store.runs import list_runs

    ft = next(r for r in list_runs(populated_store) if r.id.endswith("tiny-ft"))
    assert shown["test mIoU"] == f"{100 * ft.read_json('test_metrics.json')['miou']:.1f} %"


def test_the_umap_warm_up_at_start_runs_unless_turned_off(monkeypatch) -> None:
    import core.analysis.embedding_map as embedding_map
    from workbench import warmup

    calls: list[int] = []
    monkeypatch.setattr(embedding_map, "warm_up", lambda: calls.append(1))
    for setting, compiled in (("1", [1]), ("0", [])):
        calls.clear()
        monkeypatch.setenv("FALSE_WB_WARMUP", setting)
        warmup.start_warmup.clear()  # once per server process: a new "process" for each setting
        warmup.wait_for_warmup()  # what the Embeddings page does before its first map: never blocks for long
        assert calls == compiled, setting
    warmup.start_warmup.clear()
