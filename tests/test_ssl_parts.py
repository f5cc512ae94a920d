"""The pretraining parts that had no test of their own (issue 11): MoCo's queue as a ring with its tile ids, the
momentum update, LARS's trust ratio and parameter groups, and the warm-up + cosine schedule."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.ssl.lars import LARS
from core.ssl.models import MoCoV2
from core.ssl.optim import build_optimizer, param_groups, warmup_cosine


@pytest.fixture(scope="module")
def moco() -> MoCoV2:
    torch.manual_seed(0)
    return MoCoV2("resnet18", proj_hidden=16, proj_dim=4, momentum=0.9, queue_size=5)


def test_the_queue_is_a_ring_that_keeps_each_keys_tile(moco: MoCoV2) -> None:
    assert moco.queue_ids.tolist() == [-1] * 5 and int(moco.queue_ptr) == 0  # empty slots: not negatives yet
    a, b = torch.randn(3, 4), torch.randn(4, 4)
    moco.enqueue(a, torch.tensor([10, 11, 12]))
    assert int(moco.queue_ptr) == 3 and moco.queue_ids.tolist() == [10, 11, 12, -1, -1]
    moco.enqueue(b, torch.tensor([13, 14, 15, 16]))  # 4 more into 2 free slots: wraps to the front
    assert int(moco.queue_ptr) == 2 and moco.queue_ids.tolist() == [15, 16, 12, 13, 14]
    expect = F.normalize(torch.cat([b[2:], a[2:], b[:2]]), dim=1)
    assert torch.allclose(moco.queue, expect) and torch.allclose(moco.queue.norm(dim=1), torch.ones(5))


def test_the_momentum_update_moves_keys_towards_queries_only(moco: MoCoV2) -> None:
    assert all(not p.requires_grad for p in moco.key_params()) and all(p.requires_grad for p in moco.query_params())
    with torch.no_grad():
        for k, q in zip(moco.key_params(), moco.query_params()):
            k.fill_(1.0)
            q.fill_(3.0)
    moco.momentum_update()
    keys, queries = moco.key_params(), moco.query_params()
    assert all(torch.allclose(k, torch.full_like(k, 0.9 * 1.0 + 0.1 * 3.0)) for k in keys)
    assert all(torch.equal(q, torch.full_like(q, 3.0)) for q in queries)


def test_lars_scales_weight_matrices_by_their_trust_ratio_and_leaves_biases_to_sgd() -> None:
    """The docstring's formula (You et al., timm's): trust = eta ||w|| / (||g|| + wd ||w|| + eps), step trust (g + wd w)."""
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]]))
        layer.bias.copy_(torch.tensor([0.5, -0.5]))
    groups = param_groups(layer, weight_decay=0.1)
    assert [len(g["params"]) for g in groups] == [1, 1] and groups[1]["weight_decay"] == 0.0
    opt = LARS(groups, lr=0.5, momentum=0.9, trust_coeff=0.01)
    gw, gb = torch.tensor([[0.3, 0.0, 0.4], [1.0, 1.0, 1.0]]), torch.tensor([1.0, 2.0])

    def update(w: torch.Tensor) -> torch.Tensor:
        trust = 0.01 * w.norm() / (gw.norm() + 0.1 * w.norm() + 1e-8)  # 3 / (sqrt(3.25) + 0.3): hand-checkable
        return trust * (gw + 0.1 * w)

    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer.weight.grad, layer.bias.grad = gw.clone(), gb.clone()
    opt.step()
    assert torch.allclose(layer.weight, w0 - 0.5 * update(w0))
    assert torch.allclose(layer.bias, b0 - 0.5 * gb)  # no decay, no trust ratio
    layer.weight.grad, layer.bias.grad = gw.clone(), gb.clone()
    w1, b1 = layer.weight.detach().clone(), layer.bias.detach().clone()
    opt.step()  # momentum: the buffer holds the last step and adds this one
    assert torch.allclose(layer.bias, b1 - 0.5 * (0.9 * gb + gb))
    assert torch.allclose(layer.weight, w1 - 0.5 * (0.9 * update(w0) + update(w1)), atol=1e-6)


def test_lars_adapts_at_weight_decay_zero_and_resumes_a_checkpoint_of_the_former_loop(tmp_path) -> None:
    """timm adapts only where weight decay is non-zero unless told to: at 0 LARS must not quietly become SGD. A run
    saved by our former LARS (keys trust_coefficient, lars) must resume through the checkpoint store."""
    from core.store.checkpoint import load_checkpoint, save_checkpoint
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    opt = LARS(param_groups(layer, 0.0), lr=1.0, momentum=0.0)
    layer.weight.grad, layer.bias.grad = torch.ones(2, 3), torch.ones(2)
    opt.step()
    assert torch.allclose(layer.weight, torch.full((2, 3), 1.0 - 0.001 * 6 ** 0.5 / (6 ** 0.5 + 1e-8)))
    assert torch.allclose(layer.bias.grad, torch.ones(2))  # the gradient itself is left as it was

    former = [{"lr": 0.3, "momentum": 0.9, "weight_decay": 1e-6, "trust_coefficient": 0.002, "eps": 1e-8,
               "lars": True, "params": [0]}, {"lr": 0.3, "momentum": 0.9, "weight_decay": 0.0,
                                              "trust_coefficient": 0.002, "eps": 1e-8, "lars": False, "params": [1]}]
    fresh = LARS(param_groups(layer, 1e-6), lr=0.3)
    fresh.load_state_dict({"state": {0: {"momentum_buffer": torch.ones(2, 3)}}, "param_groups": former})
    assert [(g["trust_coeff"], g["always_adapt"]) for g in fresh.param_groups] == [(0.002, True), (0.002, False)]
    layer.weight.grad, layer.bias.grad = torch.ones(2, 3), torch.ones(2)
    fresh.step()  # a KeyError here is what an old run's resume would have met
    save_checkpoint(tmp_path / "c.safetensors", model=layer, card={}, optimizer=fresh)
    again = LARS(param_groups(layer, 1e-6), lr=0.3)
    load_checkpoint(tmp_path / "c.safetensors", model=layer, optimizer=again)
    assert again.param_groups[0]["trust_coeff"] == 0.002
    assert torch.equal(again.state[layer.weight]["momentum_buffer"], fresh.state[layer.weight]["momentum_buffer"])


def test_lars_leaves_a_zero_weight_to_plain_sgd_and_build_optimizer_names_its_choices() -> None:
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
    opt = LARS(param_groups(layer, 0.0), lr=1.0, momentum=0.0)
    layer.weight.grad = torch.ones(2, 2)
    opt.step()
    assert torch.allclose(layer.weight, -torch.ones(2, 2))  # ||w|| = 0: trust 1, not 0
    assert isinstance(build_optimizer("lars", layer, 0.1, 0.0, 0.9), LARS)
    with pytest.raises(ValueError, match="train.optimizer: unknown optimizer 'adam'"):
        build_optimizer("adam", layer, 0.1, 0.0, 0.9)


def test_adamw_takes_the_multi_tensor_path_on_the_cpu_with_the_single_tensor_bits() -> None:
    """The multi-tensor AdamW halves a CPU step; it must not change a run's numbers."""
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.LazyLinear(4)) for _ in range(2)]
    x = torch.randn(4, 3, 8, 8)
    for net in nets:
        net(x)
    nets[1].load_state_dict(nets[0].state_dict())
    ours = build_optimizer("adamw", nets[0], 1e-2, 1e-4, 0.9)
    assert all(g["foreach"] for g in ours.param_groups)
    plain = torch.optim.AdamW(param_groups(nets[1], 1e-4), lr=1e-2, foreach=False)
    for _ in range(3):
        for net, opt in ((nets[0], ours), (nets[1], plain)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(nets[0].parameters(), nets[1].parameters()))


def test_warmup_then_cosine_to_zero() -> None:
    f = [warmup_cosine(s, 110, 10) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)  # linear warm-up, reaching 1 at its end
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.5) and f[110] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # never rises after the warm-up
    assert warmup_cosine(500, 110, 10) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at zero
    assert [warmup_cosine(s, 4, 0) for s in range(5)] == pytest.approx(
        [0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(5)])



def test_a_run_inside_its_warm_up_says_so_in_its_log(tmp_path) -> None:
    """The demo preset's 20 warm-up steps in a 20-step run: its learning rate rose all run long, unsaid."""
    from core.config import load_config
    from core.ssl.optim import warm_up_note
    from core.ssl.run_start import log_start
    from core.store.lifecycle import RunLife
    from core.store.runs import create_run

    assert warm_up_note(10, 11) is None and warm_up_note(0, 5) is None
    assert warm_up_note(30, 20, "train.warmup_epochs").endswith("(shorten train.warmup_epochs)")
    assert warm_up_note(20, 20) == ("warm-up of 20 steps in a run of 20: the run is all warm-up, its learning rate "
                                    "reaches its peak (train.lr x batch / 256) at its last step if at all (shorten "
                                    "train.warmup_steps)")
    cfg = load_config("configs/demo_cpu.yaml", ["train.max_steps=20"])
    run = create_run("warm", "{}", tmp_path, kind="pretrain")
    life = RunLife(run, lambda: 0, 20)
    with pytest.warns(UserWarning, match="warm-up of 20 steps in a run of 20"):  # the terminal too
        log_start(life, cfg, [], "cpu (fp32)", "0->20", None, warm_up_note(20, 20))
    log_start(life, cfg, [], "cpu (fp32)", "5->20", None, warm_up_note(20, 20))  # a resume does not say it again
    assert run.log_text().count("warning: warm-up of 20 steps in a run of 20") == 1


def test_views_larger_than_their_tiles_are_said_once_on_the_terminal_and_in_the_log(tmp_path) -> None:
    """``data.image_size`` above ``data.tile_size`` enlarged every view without a word."""
    from core.config import load_config
    from core.ssl.run_start import log_start, upsample_note
    from core.store.lifecycle import RunLife
    from core.store.runs import create_run

    assert upsample_note(load_config("configs/demo_cpu.yaml", ["data.tile_size=96", "data.image_size=96"])) is None
    cfg = load_config("configs/demo_cpu.yaml", ["data.tile_size=64", "data.image_size=96"])
    assert upsample_note(cfg).startswith("data.image_size 96 is larger than data.tile_size 64: every view is a crop "
                                         "of a 64 px tile enlarged to 96 px")
    run = create_run("big-views", "{}", tmp_path, kind="pretrain")
    life = RunLife(run, lambda: 0, 20)
    with pytest.warns(UserWarning, match="give data.tile_size >= 96"):
        log_start(life, cfg, [], "cpu (fp32)", "0->20", None)
    log_start(life, cfg, [], "cpu (fp32)", "5->20", None)  # a resume does not say it again
    assert run.log_text().count("warning: data.image_size 96 is larger") == 1

def test_a_knn_monitor_that_never_measures_in_the_run_is_said(tmp_path) -> None:
    """The demo preset measures kNN every 50 steps: a 40-step run logged "kNN monitor every 50 steps" and drew none."""
    from core.config import load_config
    from core.ssl.run_start import log_start
    from core.store.lifecycle import RunLife
    from core.store.runs import create_run

    cfg = load_config("configs/demo_cpu.yaml", ["train.knn_every=50", "train.max_steps=40"])
    run = create_run("knn", "{}", tmp_path, kind="pretrain")
    life = RunLife(run, lambda: 0, 40)
    with pytest.warns(UserWarning, match="the kNN monitor never measures in this run"):  # the terminal too
        log_start(life, cfg, [], "cpu (fp32)", "0->40", "kNN monitor every 50 steps: 256 query tiles ...")
    assert "warning: the kNN monitor never measures in this run (40 steps, every 50): give train.knn_every=40" \
        in run.log_text()
    other = create_run("knn-ok", "{}", tmp_path, kind="pretrain")
    log_start(RunLife(other, lambda: 0, 60), cfg, [], "cpu (fp32)", "0->60", "kNN monitor every 50 steps: ...")
    assert "never measures" not in other.log_text()
    resumed = create_run("knn-on", "{}", tmp_path, kind="pretrain")  # its earlier values stand: no "never" (a review)
    log_start(RunLife(resumed, lambda: 10, 12), cfg, [], "cpu (fp32)", "10->12", "kNN monitor every 50 steps: ...")
    assert "never measures" not in resumed.log_text()


def test_one_precision_policy_for_training_and_inference(monkeypatch) -> None:
    from core import device as D
    from core.analysis.embeddings import resolve_precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: True)
    assert D.pick_precision("auto", cpu).name == "fp32"  # training on a CPU: fp32 even with native bf16
    assert D.pick_precision("auto", cpu, inference=True).name == "bf16" == resolve_precision("auto", cpu)
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: False)
    assert D.pick_precision("auto", cpu, inference=True).name == "fp32" == resolve_precision("auto", cpu)
    assert D.pick_precision("bf16", cpu).autocast and not D.pick_precision("fp32", cpu).autocast
    with pytest.raises(ValueError, match="precision: choose auto, fp32, bf16 or fp16"):
        D.pick_precision("fp8", cpu)
    with pytest.raises(ValueError, match="choose auto, fp32 or bf16"):
        resolve_precision("fp16", cpu)
    with pytest.warns(UserWarning, match="fp16 on the CPU has no fast kernels"):
        assert D.pick_precision("fp16", cpu).name == "fp16"  # still as asked, and said


@pytest.mark.parametrize("spoil, says", [
    (lambda sd: sd.update({"weight": sd["weight"].double()}), "tensor model.weight is float64"),
    (lambda sd: sd.update({"weight": sd["weight"].to(torch.int8)}), "tensor model.weight is int8"),
    (lambda sd: sd["bias"].__setitem__(0, float("nan")), "tensor model.bias holds NaN or infinite values"),
    (lambda sd: sd["weight"].__setitem__((1, 2), float("-inf")), "tensor model.weight holds NaN or infinite values"),
    (lambda sd: sd.update({"weight": sd["weight"].half().index_put_((torch.tensor([0]), torch.tensor([0])),
                                                                      torch.tensor(float("inf")).half())}),
     "tensor model.weight holds NaN or infinite values"),
])
def test_a_checkpoint_of_odd_dtypes_or_nan_weights_is_refused_in_one_line(tmp_path, spoil, says) -> None:
    """Issue 29: such a checkpoint used to load silently (cast on the way in) and produce masks."""
    from safetensors.torch import save_file

    from core.ssl.models import load_encoder_weights
    from core.store.checkpoint import CheckpointError, load_checkpoint

    layer = nn.Linear(3, 2)
    sd = {k: v.detach().clone() for k, v in layer.state_dict().items()}
    spoil(sd)
    save_file({f"model.{k}": v for k, v in sd.items()}, str(tmp_path / "bad.safetensors"), metadata={"card": "{}"})
    with pytest.raises(CheckpointError, match=says) as err:
        load_checkpoint(tmp_path / "bad.safetensors", model=nn.Linear(3, 2))
    assert "\n" not in str(err.value)
    save_file({f"encoder.{k}": v for k, v in sd.items()}, str(tmp_path / "enc.safetensors"))
    with pytest.raises(ValueError, match="model.weights: .*" + says.replace("model.", "encoder.")):
        load_encoder_weights(nn.Linear(3, 2), tmp_path / "enc.safetensors", field="model.weights")


def test_finite_and_empty_weights_pass_the_check() -> None:
    from core.store.checkpoint import check_weights

    check_weights("x", {"w": torch.randn(4, 3), "empty": torch.zeros(0, 3), "h": torch.randn(5).half(),
                        "b": torch.full((3,), 3e38).bfloat16(), "model.bn.num_batches_tracked": torch.tensor(7)})


def test_a_model_built_on_meta_gets_the_checkpoints_weights_in_its_own_dtypes(tmp_path) -> None:
    """``load_seg_model`` builds on the meta device (no random weights made to be overwritten): a float16 file still
    gives float32 weights equal to a copy-load, and a model holding a tensor no checkpoint stores is refused."""
    from core.seg.segmodel import build_seg_model, load_seg_model, make_card, save_seg_checkpoint
    from core.store.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    card = make_card(arch="deeplabv3plus", encoder="resnet18",
                     classes=[{"name": "a", "color": [200, 30, 30]}, {"name": "b", "color": [30, 200, 30]}])
    torch.manual_seed(0)
    model = build_seg_model(card).eval()
    save_seg_checkpoint(tmp_path / "m.safetensors", model.half(), card)  # float16, as the shipped files
    loaded, _ = load_seg_model(tmp_path / "m.safetensors")
    floats = [t for t in loaded.state_dict().values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 and t.device.type == "cpu" for t in floats)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.float()(x))

    class WithScratch(nn.Linear):
        def __init__(self) -> None:
            super().__init__(3, 2)
            self.register_buffer("scratch", torch.zeros(2), persistent=False)

    save_checkpoint(tmp_path / "lin.safetensors", model=nn.Linear(3, 2), card={})
    with torch.device("meta"):
        on_meta = WithScratch()
    with pytest.raises(CheckpointError, match="build it on a real device"):
        load_checkpoint(tmp_path / "lin.safetensors", model=on_meta)
