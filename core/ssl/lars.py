"""LARS as timm's ``Lars``, kept apart from ``core.ssl.optim`` so that only a run that chooses it imports timm (and
with it torchvision and ``torch._dynamo``); ``core.ssl.optim``'s docstring says why timm's and what it computes."""
from __future__ import annotations

from typing import Any

from timm.optim import Lars


class LARS(Lars):
    """timm's ``Lars`` that also resumes from checkpoints written by our former LARS (other group keys)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, trust_coeff: float = 0.001,
                 eps: float = 1e-8, foreach: bool | None = None) -> None:
        # timm adapts a group only where its weight decay is non-zero unless always_adapt: our decay group must adapt
        # even at weight decay 0 (else LARS would quietly be SGD), and the norm/bias group never
        groups = [{**{k: v for k, v in g.items() if k != "lars"}, "always_adapt": g.get("lars", True)}
                  for g in params]
        super().__init__(groups, lr=lr, momentum=momentum, trust_coeff=trust_coeff, eps=eps, foreach=foreach)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = [_upgrade_group(g) for g in state_dict["param_groups"]]
        super().load_state_dict({**state_dict, "param_groups": groups})


def _upgrade_group(group: dict[str, Any]) -> dict[str, Any]:
    """A group saved by the former LARS (``trust_coefficient``, ``lars``) in timm's keys; others pass unchanged."""
    if "trust_coeff" in group:
        return group
    old = dict(group)
    upgraded = {k: v for k, v in old.items() if k not in ("trust_coefficient", "lars")}
    upgraded.update(trust_coeff=old.get("trust_coefficient", 0.001), always_adapt=bool(old.get("lars", True)),
                    dampening=0.0, nesterov=False, trust_clip=False, foreach=None)
    return upgraded
