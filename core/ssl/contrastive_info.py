"""What a contrastive loss flagged and how its batch looks, kept on the device until someone reads it.

Why lazy: reading a count or a pair list makes the host wait for the GPU. The loss builds this from fixed-size
device tensors (padded pair slots, a ``valid`` mask, one vector of statistics); the attributes below read them only
when accessed, so the trainer can hold a step's info and read many steps at once at its logged steps
(``device_view``), while tests and reports read ``info.anchor`` or ``info.num_flagged`` as before.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

PAIR_FIELDS = ("anchor", "candidate", "distance", "cos", "cos_pos", "calibrated", "mirrored")
# the statistics vector: sums and counts over the batch of every rank
STATS = ("neg_cos_sum", "neg_n", "pos_cos_sum", "above", "rows", "flagged", "calibrated")


class ContrastiveInfo:
    """The flagged pairs (row indices global over all ranks) and the batch's statistics; no gradient.

    Pairs: ``anchor`` (row), ``candidate`` (a batch row for SimCLR, a queue slot for MoCo), ``distance`` (FNSD's
    D = |S_ac - s_a|), ``cos`` and ``cos_pos`` (of the pair and of the anchor's positive), ``calibrated`` (the
    treatment applied: FNCC's gate opened), ``mirrored`` (added in the candidate's row by ``symmetric``). Counts:
    ``num_flagged``, ``num_calibrated``; means: ``pos_cos_mean``, ``neg_cos_mean``, ``frac_above_threshold``.
    """

    PAIR_FIELDS = PAIR_FIELDS

    def __init__(self, pairs: dict[str, Tensor], valid: Tensor, stats: Tensor) -> None:
        self._pairs, self._valid, self._stats = pairs, valid, stats
        self._read: dict[str, Any] = {}

    @classmethod
    def empty(cls, stats: Tensor) -> "ContrastiveInfo":
        dev = stats.device
        pairs = {name: torch.empty(0, dtype=torch.long if name in ("anchor", "candidate") else
                                   torch.bool if name in ("calibrated", "mirrored") else torch.float32, device=dev)
                 for name in PAIR_FIELDS}
        return cls(pairs, torch.empty(0, dtype=torch.bool, device=dev), stats)

    # -------------------------------------------------------------- read on access (each one waits on the device)
    def _pair(self, name: str) -> Tensor:
        if name not in self._read:
            self._read[name] = self._pairs[name][self._valid]
        return self._read[name]

    def _stat(self, name: str) -> float:
        if "stats" not in self._read:
            self._read["stats"] = dict(zip(STATS, self._stats.tolist()))
        return self._read["stats"][name]

    anchor = property(lambda self: self._pair("anchor"))
    candidate = property(lambda self: self._pair("candidate"))
    distance = property(lambda self: self._pair("distance"))
    cos = property(lambda self: self._pair("cos"))
    cos_pos = property(lambda self: self._pair("cos_pos"))
    calibrated = property(lambda self: self._pair("calibrated"))
    mirrored = property(lambda self: self._pair("mirrored"))
    num_flagged = property(lambda self: int(self._stat("flagged")))
    num_calibrated = property(lambda self: int(self._stat("calibrated")))
    pos_cos_mean = property(lambda self: self._stat("pos_cos_sum") / max(self._stat("rows"), 1.0))
    neg_cos_mean = property(lambda self: self._stat("neg_cos_sum") / max(self._stat("neg_n"), 1.0))
    frac_above_threshold = property(lambda self: self._stat("above") / max(self._stat("rows"), 1.0))

    # -------------------------------------------------------------- without reading
    def device_view(self) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """(padded pairs, valid, statistics): the device tensors, for a reader that batches many steps."""
        return self._pairs, self._valid, self._stats

    def shift_candidates(self, delta: int) -> None:
        """Renumber the candidates (MoCo: logit column c is queue slot c - 1)."""
        self._pairs = {**self._pairs, "candidate": self._pairs["candidate"] + delta}
        self._read.pop("candidate", None)

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-serialisable dict per flagged pair."""
        cols = {name: self._pair(name).detach().cpu().tolist() for name in PAIR_FIELDS}
        return [dict(zip(cols, values)) for values in zip(*cols.values())]

    def counts(self) -> dict[str, float]:
        return {"num_flagged": self.num_flagged, "num_calibrated": self.num_calibrated,
                "pos_cos_mean": self.pos_cos_mean, "neg_cos_mean": self.neg_cos_mean,
                "frac_above_threshold": self.frac_above_threshold}


def stats_to_means(stats: dict[str, float]) -> dict[str, float]:
    """A statistics row (as read at a drain) as the metrics a log row shows."""
    rows = max(stats["rows"], 1.0)
    return {"flagged": int(stats["flagged"]), "calibrated": int(stats["calibrated"]),
            "pos_cos": stats["pos_cos_sum"] / rows, "neg_cos": stats["neg_cos_sum"] / max(stats["neg_n"], 1.0),
            "frac_above_threshold": stats["above"] / rows}


__all__ = ["ContrastiveInfo", "PAIR_FIELDS", "STATS", "stats_to_means"]
