"""bench/checkpoint_write.py runs, and its two ways of writing a checkpoint give files with the same tensors (the bench
itself refuses to print figures otherwise)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_checkpoint_write_bench_times_both_ways_of_the_same_checkpoint(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_checkpoint_write", ROOT / "bench" / "checkpoint_write.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main(["--repeats", "1"])
    assert out["size_mb"] > 100 and min(out["former_cpu_s"], out["engine_cpu_s"]) > 0
    assert "engine / former: CPU" in capsys.readouterr().out
