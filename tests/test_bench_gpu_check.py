"""The GPU check's parts run here too (a bench nobody runs breaks unseen): without CUDA the GPU-only stages say so,
the profiler stage runs on the CPU, and the report turns stage JSON into the tables of docs/gpu_check.md."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_the_gpu_stages_say_so(tmp_path: Path) -> None:
    assert bench("sync_check").main(["--json", str(tmp_path / "s.json")])["result"] == "skipped"
    assert bench("max_batch").main([])["result"] == "skipped"
    out = subprocess.run(["bash", str(ROOT / "bench/gpu_check.sh")], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin:" + str(Path(sys.executable).parent),
                              "OUT": str(tmp_path / "out"), "CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert out.returncode == 0 and "no CUDA GPU" in out.stdout


def test_the_profiler_stage_runs_on_the_cpu(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    res = bench("profile_step").main(["--steps", "1", "--top", "3", "--json", str(tmp_path / "p.json"),
                                      "model.encoder=resnet18", "model.proj_hidden=16", "model.proj_dim=8",
                                      "data.num_tiles=24", "data.tile_size=40", "data.image_size=32",
                                      "train.batch_size=8", "train.knn_every=0"])
    assert len(res["top"]) == 3 and res["ms_per_step"] > 0
    assert json.loads((tmp_path / "p.json").read_text())["top"][0]["op"].startswith("aten::")


def test_the_report_writes_its_tables_into_the_doc_and_replaces_them_next_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "train_eager.json").write_text(json.dumps({"batch": 256, "bare_views_per_s": 7400.0,
                                                       "trainer_views_per_s": 7100.0, "ratio": 0.9595}))
    (out / "loss.json").write_text(json.dumps({"dtype": "bf16", "rows": [
        {"m": 512, "loss": "ntxent_ce", "ms": 1.0, "x_ntxent": 1.0},
        {"m": 512, "loss": "false_global", "ms": 1.5, "x_ntxent": 1.5}]}))
    (out / "sync_check.json").write_text(json.dumps({"steps": 6, "result": "no synchronisation", "detail": ""}))
    doc = tmp_path / "gpu_check.md"
    doc.write_text("# The GPU check\n\nProse of the writer.\n")
    report = bench("gpu_report")
    first = report.main([str(out), "--into", str(doc)])
    assert "0.96x | >= 0.95x: **met**; bare >= 7,000 views/s: **met**" in first
    assert "`false_global` / NT-Xent, bf16, M = 512 | 1.50 ms: 1.50x | <= 1.3x: **not met**" in first
    assert "no synchronisation" in first and "ntxent_ce`" not in first
    (out / "train_eager.json").write_text(json.dumps({"batch": 256, "bare_views_per_s": 5000.0,
                                                       "trainer_views_per_s": 4000.0, "ratio": 0.8}))
    report.main([str(out), "--into", str(doc)])
    text = doc.read_text()
    assert text.startswith("# The GPU check\n\nProse of the writer.") and text.count("gpu_check:begin") == 1
    assert "0.80x | >= 0.95x: **not met**" in text and "0.96x" not in text
