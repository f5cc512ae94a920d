"""``python -m core.pretrain`` with every detector x treatment, and DCL, for SimCLR and MoCo v2, a few steps on the
synthetic set (issue 27); and a detector that does not fit is refused at load, leaving no run folder."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from core.ssl.pretrain import main
from core.store.runs import list_runs

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--no-progress", "model.encoder=resnet18", "model.proj_hidden=16", "model.proj_dim=8", "data.name=synthetic",
        "data.num_tiles=16", "data.tile_size=32", "data.image_size=32", "train.batch_size=4",
        "train.optimizer=adamw", "train.lr=0.001", "train.warmup_steps=1", "train.log_every=1", "train.knn_every=0",
        "train.max_steps=2", "train.ckpt_every=100", "seed=1", "model.queue_size=8", "loss.threshold=0.1"]
COMBINATIONS = [[f"loss.detector={d}", f"loss.treatment={t}"]
                for d, t in itertools.product(["fnsd", "nearest", "support", "oracle"], ["fncc", "eliminate", "attract"])]
STRATEGIES = [["loss.name=false", *c] for c in COMBINATIONS] + [["loss.name=dcl", "loss.tau_plus=0.2"]]
# the fast tier runs each detector and each treatment once with SimCLR, and MoCo's own paths for support views and
# the queue's classes; the full suite every combination
FAST = {("simclr", "fnsd", "eliminate"), ("simclr", "nearest", "attract"), ("simclr", "support", "fncc"),
        ("simclr", "oracle", "attract"), ("simclr", "dcl"), ("moco", "support", "eliminate"),
        ("moco", "oracle", "fncc")}


def _cases() -> list:
    cases = []
    for method, strategy in itertools.product(["simclr", "moco"], STRATEGIES):
        pair = tuple(o.split("=")[1] for o in strategy[1:]) if strategy[0] == "loss.name=false" else ("dcl",)
        slow = (method, *pair) not in FAST
        cases.append(pytest.param(method, strategy, id=f"{method}-{'-'.join(pair)}",
                                  marks=[pytest.mark.slow] if slow else []))
    return cases


@pytest.mark.parametrize("method, strategy", _cases())
def test_every_detector_and_treatment_and_dcl_pretrains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        method: str, strategy: list[str]) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    runs = tmp_path / "runs"
    assert main(["--config", str(ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(runs), *TINY,
                 f"method={method}", *strategy]) == 0
    (run,) = list_runs(runs)
    assert run.status()["state"] == "completed"
    metrics = run.metrics()
    assert len(metrics) == 2 and all(m["loss"] == m["loss"] for m in metrics)
    if strategy[0] == "loss.name=false":  # MoCo's first queue is empty: only its second step can flag
        assert sum(m["flagged"] for m in metrics) > 0
        assert run.config()["loss"]["detector"] == strategy[1].split("=")[1]
    else:
        assert all(m["flagged"] == 0 for m in metrics)


@pytest.mark.parametrize("overrides, field", [
    (["data.name=folder", "data.root={tmp}", "loss.detector=oracle"], "loss.detector=oracle"),
    (["loss.detector=nearest", "loss.topk=7"], "loss.topk"),
    (["loss.detector=support", "train.batch_size=2"], "loss.detector=support"),
    (["loss.detector=nearest", "loss.similarity=1.5"], "loss.similarity"),
    (["loss.name=dcl", "loss.tau_plus=1"], "loss.tau_plus"),
    (["loss.name=dcl", "loss.tau_plus=0"], "loss.tau_plus"),
    (["loss.name=info_nce", "loss.treatment=attract"], "loss.treatment"),
])
def test_a_detector_or_treatment_that_does_not_fit_is_refused_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], overrides: list[str],
        field: str) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    (tmp_path / "imgs").mkdir()
    runs = tmp_path / "runs"
    code = main(["--config", str(ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(runs), *TINY,
                 *(o.format(tmp=tmp_path / "imgs") for o in overrides)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and field in err, err
    assert not runs.exists() or not any(runs.iterdir())
