"""bench/lars.py runs (a bench nobody runs breaks unseen, as bench/train.py did) and the engine's LARS (timm) agrees with
the former loop where their formulas do: without weight decay both trust ratios are eta ||w|| / ||g||."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("bench_lars", ROOT / "bench" / "lars.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lars_bench_times_both_and_they_agree_without_weight_decay(capsys) -> None:
    bench = _bench()
    out = bench.main(["--device", "cpu", "--encoder", "resnet18", "--repeats", "1", "--weight-decay", "0"])
    assert out["update_difference"] < 1e-5
    assert min(out["former"], out["timm loop"], out["timm foreach"]) > 0
    assert "former / this" in capsys.readouterr().out
    decayed = bench.main(["--device", "cpu", "--encoder", "resnet18", "--repeats", "1", "--weight-decay", "0.1"])
    assert decayed["update_difference"] > 1e-3  # the formulas differ once weight decay counts
