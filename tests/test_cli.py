"""The installed project (issue 11): ``false-wb`` runs the engine from any folder, presets found by their README
names; ``python -m core.<x>`` keeps working beside it."""
from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_false_wb_pretrains_from_another_folder(tmp_path: Path) -> None:
    exe = shutil.which("false-wb")
    assert exe, "false-wb is not installed: run scripts/setup.sh (it does pip install -e .)"
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {"PATH": str(Path(exe).parent) + ":/usr/bin:/bin", "FALSE_WB_DATA": str(tmp_path / "data"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "HOME": str(tmp_path)}
    proc = subprocess.run([exe, "pretrain", "--config", "configs/demo_cpu.yaml", "--runs-root", str(tmp_path / "runs"),
                           "--no-progress", "train.max_steps=3", "data.num_tiles=16", "data.tile_size=48",
                           "data.image_size=32", "train.batch_size=8"], cwd=away, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [run] = list((tmp_path / "runs").iterdir())
    assert (run / "checkpoints" / "encoder.safetensors").is_file() and proc.stdout.startswith("completed: ")


def test_usage_and_unknown_commands(capsys) -> None:
    assert main([]) == 2 and "usage: false-wb COMMAND" in capsys.readouterr().out
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in [*COMMANDS, "app"])
    assert main(["pretrian"]) == 2 and "unknown command 'pretrian'" in capsys.readouterr().err
    for module, _ in COMMANDS.values():  # every subcommand is a module with a main(argv), read from its source
        source = Path(importlib.util.find_spec(module).origin).read_text()  # importing gradio alone took seconds
        assert any(isinstance(node, ast.FunctionDef) and node.name == "main" and node.args.args
                   for node in ast.parse(source).body), module
    out = subprocess.run([sys.executable, "-m", "core.pretrain", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "--resume" in out.stdout


def test_help_and_a_wrong_option_answer_before_torch_is_imported() -> None:
    """``false-wb CMD -h`` and a mistyped flag come from the light parsers (``core.cli_args``): no torch, no gradio,
    so they answer at once; the parsers are the commands' own (a command's help lists its command's flags)."""
    code = ("import sys\n"
            "from core.cli import COMMANDS, main\n"
            "codes = [main([cmd, '-h']) for cmd in COMMANDS]\n"
            "codes += [main(['pretrain', '--bogus']), main(['demo', '--port', 'x'])]\n"
            "print(codes, 'torch' in sys.modules, 'gradio' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines()[-1] == f"{[0] * len(COMMANDS) + [2, 2]} False False", out.stdout[-2000:]
    assert "--jobs N" in out.stdout and "--labels MASK" in out.stdout and "--concurrency" in out.stdout
    assert "unrecognized arguments: --bogus" in out.stderr and "must be a port number" in out.stderr
    assert "usage: false-wb compare" in out.stdout and "``" not in out.stdout  # as typed; no docstring markup
    shim = subprocess.run([sys.executable, "-m", "core.segment", "-h"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert shim.returncode == 0 and "--max-megapixels" in shim.stdout and "usage: python -m core.segment" in shim.stdout


def test_app_help_and_a_config_beside_a_run_folder(capsys) -> None:
    """``false-wb app -h`` is the workbench's help (``streamlit run`` refuses -h); a ``--config`` with ``--resume`` or
    ``--run-dir`` would be ignored (the folder's config.yaml is used), so it is refused in one line."""
    assert main(["app", "-h"]) == 0 and "usage: false-wb app" in capsys.readouterr().out
    for folder in ("--resume", "--run-dir"):
        for cmd in ("pretrain", "finetune", "compare"):
            assert main([cmd, "--config", "configs/demo_cpu.yaml", folder, "runs/x"]) == 2
            err = capsys.readouterr().err.strip().splitlines()[-1]
            assert err == (f"false-wb {cmd}: error: --config with {folder}: the run folder's own config.yaml is used; "
                           "change its settings with key=value overrides"), err


@pytest.mark.slow
def test_a_skipped_file_is_one_plain_warning_line(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    (folder / "bad.png").write_text("not an image")
    proc = subprocess.run([sys.executable, "-m", "core.pretrain", "--config", "configs/demo_cpu.yaml", "--no-progress",
                           "--runs-root", str(tmp_path / "runs"), "data.name=folder", f"data.root={folder}",
                           "data.tile_size=32", "data.image_size=32", "train.batch_size=4", "train.max_steps=1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = [line for line in proc.stderr.splitlines() if "bad.png" in line]
    assert warned == [f"warning: skipping unreadable image {folder / 'bad.png'}: not an image (unknown or unsupported "
                      "format)"], proc.stderr[-2000:]
    assert ".py:" not in proc.stderr  # no file and source line of our code
    # a run shorter than its kNN interval and its warm-up says so on the terminal too, not in log.txt alone
    assert "warning: warm-up of 20 steps in a run of 1: the run is all warm-up" in proc.stderr


def test_labels_given_before_the_images_are_said_to_take_them(capsys) -> None:
    """`segment --labels m.png img.jpg --out o` gave both files to --labels and said only "required: IMAGE"."""
    from core.cli import main

    assert main(["segment", "--labels", "m.png", "img.jpg", "--out", "o"]) == 2
    assert "--labels takes every file after it, so give the images first" in capsys.readouterr().err
    assert main(["segment", "--out", "o"]) == 2
    assert "--labels takes" not in capsys.readouterr().err  # no images at all: the plain reason


def test_the_compare_helps_quick_look_shortens_every_pretraining_unit() -> None:
    """A review found no duration and no way to shorten a comparison in `false-wb compare -h`: its epilog gives
    both, and the overrides it shows do what it says."""
    import re

    from core.cli_args import compare_parser
    from core.config import load_config
    from core.seg.compare_config import CompareConfig, pretrain_config

    text = " ".join(compare_parser().format_help().split())
    assert "about 25 minutes" in text
    shown = re.findall(r'"([a-z_]+\+?=\[[^\]]*\])"', text.split("A quick look:")[1])
    assert shown == ["methods=[simclr,simclr_false]", "pretrain_seeds=[0,1]",
                     "pretrain_overrides+=[train.max_steps=20]"]
    cfg = load_config("configs/compare_cpu.yaml", shown, CompareConfig)
    assert cfg.methods == ["simclr", "simclr_false"] and pretrain_config(cfg, "simclr", 0, []).train.max_steps == 20


def test_library_words_do_not_reach_the_user(tmp_path: Path) -> None:
    """A review: torch's list of twenty device types, "no such folder" of a file that exists, and safetensors'
    "header too large" for a card given as model.init."""
    import pytest

    from core.device import pick_device
    from core.ssl.models import load_encoder_weights
    from core.store.runs import NotARunError, open_run

    with pytest.raises(ValueError, match=r"^device 'foo': give auto, cpu, cuda, cuda:N or mps$"):
        pick_device("foo")
    (tmp_path / "m.safetensors").write_bytes(b"x")
    with pytest.raises(NotARunError, match=r"not a run folder \(a file\)"):
        open_run(tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(ValueError, match="is a checkpoint's card; give the weights beside it"):
        load_encoder_weights(None, tmp_path / "m.json", field="model.init")


def test_every_command_prints_a_warning_as_one_line(monkeypatch) -> None:
    """A review saw a comparison unit's warning with our file name and source line; the trainers' commands printed
    the same warning as ``warning: ...``. The dispatcher and the comparison's own entry now both do."""
    import importlib
    import warnings
    from types import SimpleNamespace

    import core.cli as cli
    from core.seg import compare

    seen = []
    fake = SimpleNamespace(main=lambda rest: seen.append(warnings.formatwarning("slow", UserWarning, "x.py", 3)))
    monkeypatch.setattr(importlib, "import_module", lambda name: fake)
    monkeypatch.setattr(cli, "check_arguments", lambda *a: None)
    assert cli.main(["runs"]) == 0 and seen == ["warning: slow\n"]
    assert warnings.formatwarning("slow", UserWarning, "x.py", 3) != "warning: slow\n"  # restored after
    assert hasattr(compare.main, "__wrapped__")  # python -m core.compare, as the app starts it, too


def test_a_negative_picture_count_is_refused(capsys) -> None:
    """``track --pictures -1`` was taken as none without a word (a review)."""
    assert main(["track", "some-run", "--to", "tensorboard", "--pictures", "-1"]) == 2
    assert "--pictures: must be 0 or a positive integer, got '-1'" in capsys.readouterr().err
