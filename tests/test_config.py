"""Config validation: every bad value fails at load with one line that names the field."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import ConfigError, FinetuneConfig, PretrainConfig, ProbeConfig, apply_overrides, load_config

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("preset", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_presets_load(preset: str) -> None:
    from core.seg.compare import CompareConfig

    from core.store.runs import kind_of_config

    raw = yaml.safe_load((CONFIGS / preset).read_text())
    model = {"finetune": FinetuneConfig, "compare": CompareConfig, "probe": ProbeConfig,
             "pretrain": PretrainConfig}[kind_of_config(raw)]
    assert kind_of_config(raw) == preset.split("_")[0] or model is PretrainConfig
    cfg = load_config(CONFIGS / preset, model=model)
    assert isinstance(cfg, model)


def test_paper_presets_match_the_published_settings() -> None:
    cfg = load_config(CONFIGS / "false_simclr_paper.yaml")
    assert (cfg.model.encoder, cfg.data.image_size, cfg.train.batch_size) == ("resnet50", 224, 256)
    assert (cfg.loss.name, cfg.loss.temperature, cfg.loss.alpha, cfg.loss.threshold) == ("false", 0.5, 1.0, 0.9)
    assert (cfg.train.optimizer, cfg.train.epochs) == ("lars", 200)
    base = load_config(CONFIGS / "simclr_paper.yaml")
    assert base.loss.name == "info_nce"
    assert base.model_dump(exclude={"loss", "name"}) == cfg.model_dump(exclude={"loss", "name"})
    moco = load_config(CONFIGS / "false_moco_paper.yaml")
    assert moco.method == "moco" and moco.loss.name == "false"
    assert load_config(CONFIGS / "moco_paper.yaml").loss.name == "info_nce"


def test_overrides_are_typed() -> None:
    cfg = load_config(CONFIGS / "demo_cpu.yaml", ["loss.alpha=0.9", "loss.selection=per_anchor", "train.max_steps=7",
                                                   "loss.symmetric=true", "model.encoder=resnet34"])
    assert cfg.loss.alpha == 0.9 and cfg.loss.selection == "per_anchor" and cfg.train.max_steps == 7
    assert cfg.loss.symmetric is True and cfg.model.encoder == "resnet34"


@pytest.mark.parametrize("override, field", [
    ("loss.alpha=1.5", "loss.alpha"),
    ("loss.alpha=-0.1", "loss.alpha"),
    ("loss.threshold=0", "loss.threshold"),
    ("loss.threshold=1.2", "loss.threshold"),
    ("loss.temperature=0", "loss.temperature"),
    ("loss.temperature=-1", "loss.temperature"),
    ("model.encoder=vgg99", "model.encoder"),
    ("method=byol", "method"),
    ("train.batch_size=1", "train.batch_size"),
    ("loss.selection=local", "loss.selection"),
    ("loss.topk=0", "loss.topk"),
    ("loss.topk=1000000000", "loss.topk"),  # global selection too (it started a run that failed at step 1)
    ("train.bogus=3", "train.bogus"),
    ("data.name=folder", "data.root"),
])
def test_bad_values_name_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "demo_cpu.yaml", [override])
    message = str(err.value)
    assert field in message
    assert "\n" not in message


def test_eliminating_every_negative_is_refused_where_the_detector_ranks_them_all() -> None:
    """topk equal to an anchor's negatives under eliminate ran with a loss of 0 at every step, said nowhere."""
    every = ["train.batch_size=16", "loss.topk=30", "loss.treatment=eliminate"]
    for detector, selection in (("nearest", "global"), ("support", "per_anchor"), ("fnsd", "per_anchor")):
        with pytest.raises(ConfigError, match=r"loss.topk \(30\) under loss.treatment=eliminate takes every negative"):
            load_config(CONFIGS / "demo_cpu.yaml", [*every, f"loss.detector={detector}", f"loss.selection={selection}"])
    for fine in (["loss.topk=29"], ["loss.detector=nearest", "loss.similarity=0.9"], ["loss.treatment=fncc"],
                 ["loss.detector=fnsd", "loss.selection=global"]):
        assert load_config(CONFIGS / "demo_cpu.yaml", [*every, *fine]).loss.topk in (29, 30)


def test_bad_override_syntax_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["loss.alpha"])
    for empty in ("=5", "loss..alpha=1", " =2"):  # they said only "config: unknown setting"
        with pytest.raises(ConfigError, match="the key before '=' names no setting"):
            apply_overrides({}, [empty])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_finetune_paper_preset_is_the_papers_protocol() -> None:
    cfg = load_config(CONFIGS / "finetune_paper_frozen.yaml", model=FinetuneConfig)
    assert (cfg.model.arch, cfg.model.encoder, cfg.model.output_stride, cfg.model.aux_head) == \
        ("deeplabv3plus", "resnet50", 8, True)
    assert (cfg.train.protocol, cfg.train.batch_size, cfg.train.max_steps, cfg.train.lr) == ("frozen", 16, 1300, 0.01)
    assert cfg.data.crop_size == 256 and cfg.model.decoder_channels == 512



def test_a_fine_tuning_batch_of_one_tile_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="train.batch_size"):  # BatchNorm cannot train on one tile a step
        load_config(CONFIGS / "finetune_demo_cpu.yaml", ["train.batch_size=1"], model=FinetuneConfig)

def test_a_moco_queue_must_hold_a_batch() -> None:
    from core.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="model.queue_size"):
        load_config(None, ["method=moco", "model.queue_size=3", "train.batch_size=16", "train.max_steps=1"])
    assert load_config(None, ["method=simclr", "model.queue_size=3", "train.batch_size=16",
                                   "train.max_steps=1"]).model.queue_size == 3


def test_a_comparison_needs_a_method() -> None:
    from core.seg.compare import CompareConfig
    from core.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="methods: name at least 1 method"):
        validate_config({"pretrain_config": "a.yaml", "finetune_config": "b.yaml", "methods": []}, CompareConfig)


def test_plus_equals_extends_a_list_setting() -> None:
    raw = apply_overrides({"pretrain_overrides": ["a=1"], "x": {"y": 1}}, ["pretrain_overrides+=[b=2, c=3]",
                                                                          "new+=d=4"])
    assert raw["pretrain_overrides"] == ["a=1", "b=2", "c=3"] and raw["new"] == ["d=4"]
    with pytest.raises(ConfigError, match="x.y is not a list"):
        apply_overrides(raw, ["x.y+=[1]"])


@pytest.mark.parametrize("override", ["model.proj_dim=1000000000", "model.queue_size=1000000000000", "train.lr=.inf",
                                      "train.lr=nan", "loss.threshold=nan", "data.image_size=1000000",
                                      "data.num_tiles=1000000000", "data.tile_size=1000000"])
def test_absurd_values_exit_2_in_one_line_without_a_run_folder(override, tmp_path, capsys) -> None:
    from core.ssl.pretrain import main

    root = Path(__file__).resolve().parent.parent
    assert main(["--config", str(root / "configs" / "demo_cpu.yaml"), "--runs-root", str(tmp_path / "runs"),
                 "--no-progress", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and override.split("=")[0] in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_undecodable_and_empty_config_files_are_one_line(tmp_path, capsys) -> None:
    from core.ssl.pretrain import main

    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe name: x")
    (tmp_path / "empty.yaml").write_text("")
    for name, why in (("bad.yaml", "is not UTF-8 text"), ("empty.yaml", "is empty")):
        assert main(["--config", str(tmp_path / name), "--runs-root", str(tmp_path / "runs"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_unusable_encoder_weights_are_one_line_in_pretraining(tmp_path, capsys) -> None:
    import torch

    from core.ssl.pretrain import main

    root = Path(__file__).resolve().parent.parent
    torch.save({"a": 1}, tmp_path / "evil.pt")  # a pickle: never loaded
    good = root / "checkpoints" / "synthetic_false_encoder.safetensors"
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:100])
    cases = [(["model.weights=" + str(tmp_path / "evil.pt")], "not a readable safetensors file"),
             (["model.weights=" + str(tmp_path / "cut.safetensors")], "not a readable safetensors file"),
             (["model.weights=" + str(good), "model.encoder=resnet34"], "does not fit this encoder")]
    for overrides, why in cases:
        assert main(["--config", str(root / "configs" / "demo_cpu.yaml"), "--runs-root", str(tmp_path / "runs"),
                     "--no-progress", "data.num_tiles=16", "train.batch_size=8", *overrides]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith("error: model.weights: ") and why in errors[0]
    assert not (tmp_path / "runs").exists()


def test_a_retired_setting_in_an_old_run_config_is_dropped_not_refused() -> None:
    from core.config import FinetuneConfig, PretrainConfig, config_to_yaml, validate_config

    pre = validate_config({"train": {"num_workers": 4, "max_steps": 3}}, PretrainConfig)
    ft = validate_config({"train": {"num_workers": 2, "max_steps": 3}}, FinetuneConfig)
    assert pre.train.max_steps == 3 and ft.train.max_steps == 3
    assert "num_workers" not in config_to_yaml(pre) + config_to_yaml(ft)  # nothing read it: it is gone


def test_forms_read_their_options_from_the_configs_literals() -> None:
    import pytest as _pytest

    from core.config import FinetuneConfig, PretrainConfig, choices

    assert choices(PretrainConfig, "train.precision") == ["auto", "fp32", "bf16", "fp16"]  # (methods: the registry)
    assert choices(PretrainConfig, "train.optimizer") == ["lars", "adamw", "sgd"]
    assert choices(FinetuneConfig, "train.protocol") == ["frozen", "full"]
    for value in choices(FinetuneConfig, "model.arch"):  # every offered value validates
        assert FinetuneConfig.model_validate({"model": {"arch": value}, "train": {"max_steps": 1}}).model.arch == value
    with _pytest.raises(TypeError, match="train.lr is not a Literal setting"):
        choices(PretrainConfig, "train.lr")


@pytest.mark.parametrize("overrides, says", [
    (["train.device=tpu"], "train.device: unknown device 'tpu'; choose auto, cpu, cuda, cuda:N or mps"),
    (["seed=1e23"], "seed: "),
    (["seed=-3"], "seed: Input should be greater than or equal to 0"),
    (["seed=3000000000"], "seed: Input should be less than or equal to 2147483647"),
    (["model.proj_hidden=65536", "model.proj_dim=65536"], "model: proj_hidden x proj_dim: a projection head of 65536"),
])
def test_settings_no_machine_can_run_are_refused_at_load_naming_the_field(overrides, says) -> None:
    """Issue 29: these used to start and then traceback (an unknown device, a seed past 2^63 in the generators) or
    allocate until the machine gave up (a 4-billion-weight head)."""
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.max_steps=1", *overrides])
    assert says in str(err.value)


@pytest.mark.parametrize("preset, kind", [("finetune_demo_cpu.yaml", "finetune"), ("demo_cpu.yaml", "pretrain")])
def test_a_learning_rate_that_only_diverges_is_refused_at_load(preset: str, kind: str) -> None:
    """A review typed lr 1e9 in the Fine-tune form: it launched and failed at step 3 with a NaN loss."""
    model = FinetuneConfig if kind == "finetune" else PretrainConfig
    with pytest.raises(ConfigError, match="train.lr: Input should be less than or equal to 10"):
        load_config(CONFIGS / preset, ["train.lr=1e9"], model=model)
    assert load_config(CONFIGS / preset, ["train.lr=1e-6"], model=model).train.lr == 1e-6


def test_a_refused_setting_exits_2_and_makes_no_run_folder(tmp_path) -> None:
    from core.ssl.pretrain import main

    assert main(["--config", str(CONFIGS / "demo_cpu.yaml"), "--runs-root", str(tmp_path / "runs"),
                 "train.device=tpu"]) == 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    with pytest.raises(ConfigError, match="train.device: unknown device"):  # the segmentation configs share the rule
        load_config(CONFIGS / "finetune_demo_cpu.yaml", ["train.device=tpu"], model=FinetuneConfig)


@pytest.mark.parametrize("model, overrides, says", [
    (PretrainConfig, ["train.max_steps=99999999999999999999"], "train.max_steps: Input should be less than or equal "
                                                                "to 1000000000"),
    (PretrainConfig, ["train.log_every=10000000000"], "train.log_every: Input should be less than or equal to"),
    (PretrainConfig, ["train.max_steps=null", "train.epochs=1e9"], "train.epochs: Input should be less than or equal"),
    (PretrainConfig, ["train.warmup_epochs=1e9"], "train.warmup_epochs: Input should be less than or equal"),
    (FinetuneConfig, ["train.max_steps=99999999999999999999"], "train.max_steps: Input should be less than or equal"),
    (FinetuneConfig, ["train.eval_every=10000000000"], "train.eval_every: Input should be less than or equal to"),
])
def test_a_run_length_past_a_billion_steps_is_refused_at_load(model, overrides, says) -> None:
    """A review's run of 10^20 steps started (time left: 65 quadrillion hours) and its status broke the Runs table."""
    preset = CONFIGS / ("demo_cpu.yaml" if model is PretrainConfig else "finetune_demo_cpu.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(preset, overrides, model=model)
    assert says in str(err.value)


def test_epochs_that_come_to_more_than_a_billion_steps_are_refused_naming_the_field() -> None:
    from core.config import MAX_STEPS, total_steps

    assert total_steps(7, 1e6, 10**9) == 7  # a set length wins
    assert total_steps(None, 2.5, 4) == 10
    with pytest.raises(ConfigError, match=r"train.epochs: 1e\+06 epochs of 2000 steps are 2,000,000,000 steps"):
        total_steps(None, 1e6, 2000)
    assert total_steps(None, 1e6, 1000) == MAX_STEPS


def test_an_epochs_override_sets_the_length_and_a_config_of_the_other_kind_names_its_command() -> None:
    """The review: ``train.epochs=2`` on a preset with ``train.max_steps`` ran the preset's 300 steps without a word;
    a fine-tuning preset given to pretraining said "model.arch: unknown setting"."""
    cfg = load_config(ROOT / "configs/demo_cpu.yaml", ["train.epochs=2"])
    assert cfg.train.epochs == 2 and cfg.train.max_steps is None
    cfg = load_config(ROOT / "configs/demo_cpu.yaml", ["train.epochs=2", "train.max_steps=5"])
    assert cfg.train.max_steps == 5  # both given: as before, max_steps wins
    assert load_config(ROOT / "configs/demo_cpu.yaml", []).train.max_steps == 300
    for path, model, command in (("finetune_dubai_cpu.yaml", PretrainConfig, "core.finetune"),
                                 ("demo_cpu.yaml", FinetuneConfig, "core.pretrain"),
                                 ("compare_cpu.yaml", PretrainConfig, "core.compare"),
                                 ("probe_demo_cpu.yaml", PretrainConfig, "core.probe"),
                                 ("probe_demo_cpu.yaml", FinetuneConfig, "core.probe"),
                                 ("demo_cpu.yaml", ProbeConfig, "core.pretrain"),  # 12 unknown settings before
                                 ("compare_cpu.yaml", ProbeConfig, "core.compare"),
                                 ("finetune_demo_cpu.yaml", ProbeConfig, "core.finetune")):
        with pytest.raises(ConfigError, match=f"^this is a .* config .*: run it with python -m {command}($|, or )"):
            load_config(ROOT / "configs" / path, [], model)
    with pytest.raises(ConfigError, match="^train.max_steps: unknown setting"):  # a slip, not another kind of config
        load_config(ROOT / "configs/probe_demo_cpu.yaml", ["train.max_steps=10"], ProbeConfig)


def test_a_misspelt_setting_is_answered_with_the_close_one_and_every_wrong_setting_is_counted() -> None:
    """The review: "train.max_step: unknown setting" with no hint, and a second typo found only after the first."""
    with pytest.raises(ConfigError, match=r"^train\.max_step: unknown setting \(did you mean train\.max_steps\?\)$"):
        load_config(ROOT / "configs/demo_cpu.yaml", ["train.max_step=20"])
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs/demo_cpu.yaml", ["loss.temprature=0.5", "train.max_setps=3", "train.bogus=1"])
    assert str(err.value) == ("loss.temprature: unknown setting (did you mean loss.temperature?); train.max_setps: "
                              "unknown setting (did you mean train.max_steps?); train.bogus: unknown setting")
    assert ("train.bogus", "unknown setting") in err.value.problems  # nothing is close to it: no guess
    with pytest.raises(ConfigError, match=r"^max_steps: unknown setting \(did you mean train\.max_steps\?\)$"):
        load_config(ROOT / "configs/demo_cpu.yaml", ["max_steps=5"])  # its section left out (a review)
    with pytest.raises(ConfigError) as err:  # each with its own answer, a wrong choice with its allowed values too
        load_config(ROOT / "configs/demo_cpu.yaml", ["loss.selection=globl", "train.optimizer=adam"])
    assert "loss.selection: Input should be 'global' or 'per_anchor', got 'globl'; train.optimizer: Input should " \
           "be" in str(err.value) and "got 'adam'" in str(err.value)


@pytest.mark.parametrize("preset, kind", [("demo_cpu.yaml", PretrainConfig),
                                          ("finetune_demo_cpu.yaml", FinetuneConfig)])
def test_shares_held_out_that_leave_no_scene_to_train_are_refused(preset: str, kind: type) -> None:
    """A review: val 0.6 + test 0.6 trained on 1 tile of 2,000 without a word. A named scene list replaces its
    share, so only the shares still in effect count."""
    with pytest.raises(ConfigError, match=r"data.val_fraction 0.6 \+ data.test_fraction 0.6 hold out every scene"):
        load_config(CONFIGS / preset, ["data.val_fraction=0.6", "data.test_fraction=0.6"], kind)
    assert load_config(CONFIGS / preset, ["data.val_fraction=0.6", "data.test_fraction=0.3"], kind)
    assert load_config(CONFIGS / preset, ["data.val_fraction=0.6", "data.test_fraction=0.6",
                                          "data.test_scenes=[synthetic-1]"], kind)


def test_scenes_named_for_an_unlabeled_folder_are_refused() -> None:
    """A folder without a class table has no split: its every image is pretrained on, the named test scenes too."""
    with pytest.raises(ConfigError, match=r"^data.test_scenes: an image folder without a class table has no split"):
        load_config(CONFIGS / "demo_cpu.yaml", ["data.name=folder", "data.root=x", "data.test_scenes=[tile_3]"])


def test_a_section_check_naming_its_field_is_said_once_and_filed_under_that_field() -> None:
    """A review read "data: data.split_unit applies to ...": the section's name before a message that names the
    field; the form now puts the error beside that field, not the section."""
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "finetune_dglc_cpu.yaml", ["data.tile_overlap=300"], FinetuneConfig)
    assert str(err.value) == "data.tile_overlap must be smaller than data.tile_size"
    assert err.value.problems == [("data.tile_overlap", "data.tile_overlap must be smaller than data.tile_size")]
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "finetune_dglc_cpu.yaml", ["data.split_unit=folder"], FinetuneConfig)
    assert str(err.value).startswith("data.split_unit applies to an image folder") and \
        str(err.value).endswith("remove it (data.split_unit=null)")
    with pytest.raises(ConfigError) as err:  # a whole config's check names its field too
        load_config(CONFIGS / "finetune_dglc_cpu.yaml", ["data.val_fraction=0"], FinetuneConfig)
    assert err.value.problems[0][0] == "data.val_fraction" and str(err.value).startswith("data.val_fraction: 0 ")
