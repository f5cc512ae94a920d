"""Flagged false-negative pairs of a pretraining run: loading, counting, and scoring them against labels.

Why: FNSD flags pairs without labels. Whether it finds real false negatives can only be judged where the data set
has labels, and only against chance: on a set where most tiles are buildings, a random pair already shares its
dominant class half of the time. So precision is always reported beside the base rate of a random pair of distinct
tiles, per step bin over training.

The UI calls these functions and draws what they return; nothing here imports streamlit.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..config import ConfigError, PretrainConfig, upgrade_run_config, validate_config
from ..store.runs import Run, kind_of_config, read_jsonl
from ..data.dominant import NO_CLASS, dominant_classes  # noqa: F401 - the analysis reads them from here too
from ..ssl.registry import method_label
from .stats import wilson_interval  # noqa: F401 - the flag reports read it from here too
from .fn_units import tile_pair_units

PAIR_COLUMNS = ("step", "anchor_index", "anchor_view", "candidate_index", "candidate_view", "distance", "cos",
                "cos_pos", "calibrated", "mirrored")
SORTS = {  # the gallery's orders: most confident flags first
    "distance": ("distance", True),
    "cos": ("cos", False),
    "step": ("step", True),
}


# ------------------------------------------------------------------------------------------------ the run
def run_config(run: Run) -> PretrainConfig:
    """The run's validated config; ConfigError (one line) when config.yaml is missing, torn or invalid.

    Why not validate ``{}``: an unreadable file would silently become the defaults and show the wrong data set.
    """
    raw = run.config()
    if not raw:
        raise ConfigError(f"config.yaml of run {run.id} is missing or unreadable")
    return validate_config(upgrade_run_config(raw))


def nothing_flagged_reason(run: Run, cfg: PretrainConfig, pairs: pd.DataFrame) -> str | None:
    """Why a run has no pairs to show (FALSE off, no fns.jsonl yet, none flagged), or None when it has some."""
    if cfg.loss.name != "false":
        return (f"FALSE was off in this run (loss: {cfg.loss.name}, e.g. a baseline), so no detector flagged anything. "
                "A run with loss FALSE (the Pretrain page's Loss, or loss.name=false) flags the pairs shown here.")
    if not pairs.empty:
        return None
    live = " yet; they appear as training goes on" if run.is_live() else ""
    if not (run.path / "fns.jsonl").exists():
        return f"This run has no fns.jsonl: no pair was flagged{live or ' before it ended'}."
    return f"{detector_words(cfg.loss.detector)} flagged no pairs in this run{live}."


def load_pairs(run: Run) -> pd.DataFrame:
    """All flagged pairs of a run as typed columns (:data:`PAIR_COLUMNS`); an empty frame when there are none.

    Records without both tile indices are dropped (a torn or foreign line); missing optional fields are filled.
    """
    frame = pd.DataFrame(read_jsonl(run.path / "fns.jsonl"), columns=list(PAIR_COLUMNS))
    frame = frame.dropna(subset=["step", "anchor_index", "candidate_index"])
    return pd.DataFrame({
        "step": frame["step"].astype("int64"),
        "anchor_index": frame["anchor_index"].astype("int64"),
        "anchor_view": frame["anchor_view"].astype("Int64"),
        "candidate_index": frame["candidate_index"].astype("int64"),
        "candidate_view": frame["candidate_view"].astype("Int64"),  # None for MoCo (a queue entry)
        "distance": frame["distance"].astype("float64"),
        "cos": frame["cos"].astype("float64"),
        "cos_pos": frame["cos_pos"].astype("float64"),
        "calibrated": frame["calibrated"].fillna(False).astype(bool),
        "mirrored": frame["mirrored"].fillna(False).astype(bool),
    }).reset_index(drop=True)


def last_step_of(run: Run, pairs: pd.DataFrame | None = None) -> int:
    """The last step whose flags are all written: the run's last step (its status) or flag, whichever is later; for a
    run still training, its last logged step, as the flags of the steps since wait on the device until the next log
    (a review read "over 20 of 24 steps" of a live run whose detector flags at every step)."""
    pairs = load_pairs(run) if pairs is None else pairs
    flagged = int(pairs["step"].max()) if len(pairs) else 0
    if run.is_live():
        from ..store.run_summary import last_record

        logged = (last_record(run.path / "metrics.jsonl") or {}).get("step")
        return max(flagged, int(logged)) if isinstance(logged, (int, float)) else flagged
    return int(max(int(run.status().get("step") or 0), flagged))


def filter_pairs(pairs: pd.DataFrame, steps: tuple[int, int] | None = None, calibrated_only: bool = False,
                 sort_by: str = "distance") -> pd.DataFrame:
    """The pairs within a step range (inclusive), optionally calibrated ones only, in the order ``sort_by``."""
    if sort_by not in SORTS:
        raise ValueError(f"sort_by: choose one of {', '.join(SORTS)}, got {sort_by!r}")
    keep = pd.Series(True, index=pairs.index)
    if steps is not None:
        keep &= pairs["step"].between(steps[0], steps[1])
    if calibrated_only:
        keep &= pairs["calibrated"]
    column, ascending = SORTS[sort_by]
    return pairs[keep].sort_values([column, "step"], ascending=[ascending, True], kind="stable")


def flag_counts(pairs: pd.DataFrame, last_step: int | None = None, max_points: int = 1000) -> pd.DataFrame:
    """Flagged and calibrated pairs per step, steps without flags included as zeros.

    Why from fns.jsonl and not metrics.jsonl: the trainer writes every flagged pair but logs metrics only every
    ``log_every`` steps. Long runs are summed into at most ``max_points`` equal step bins and reported per step
    (the mean over the bin), so the chart stays readable and light.
    """
    last = int(max(last_step or 0, pairs["step"].max() if not pairs.empty else 0))
    if last < 1:
        return pd.DataFrame({"step": pd.Series(dtype="int64"), "flagged": pd.Series(dtype="float64"),
                             "calibrated": pd.Series(dtype="float64")})
    width = max(1, math.ceil(last / max_points))
    bins = np.clip(pairs["step"].to_numpy() - 1, 0, last - 1) // width
    n_bins = math.ceil(last / width)
    flagged = np.bincount(bins, minlength=n_bins)[:n_bins]
    calibrated = np.bincount(bins, weights=pairs["calibrated"].to_numpy(float), minlength=n_bins)[:n_bins]
    starts = np.arange(n_bins) * width + 1
    steps_in_bin = np.minimum(starts + width - 1, last) - starts + 1
    return pd.DataFrame({"step": np.minimum(starts + width - 1, last), "flagged": flagged / steps_in_bin,
                         "calibrated": calibrated / steps_in_bin})


# ------------------------------------------------------------------------------------------------ the treatment
NEAR_ZERO_SHARE = 0.1  # calibration in fewer than 1 step in 10 ...
NEAR_ZERO_PER_STEP = 0.1  # ... and fewer than 0.1 calibrated pairs per step: the loss is the base method's to about
# 4 decimals (a calibrated pair changes one anchor's term out of the 2 x batch of a step)
VERDICT_MIN_STEPS = 10  # fewer steps say too little to call a run "in effect its base method" (unless alpha is 0)
DETECTOR_WORDS = {"fnsd": "FNSD", "nearest": "The nearest detector", "support": "The support detector",
                  "oracle": "The oracle (uses labels)"}


def detector_words(detector: str) -> str:
    """A detector as the subject of a sentence: "FNSD", "The nearest detector", "The oracle (uses labels)"."""
    return DETECTOR_WORDS.get(detector, f"The {detector} detector")


def _lower_first(text: str) -> str:
    """"The nearest detector" inside a sentence; "FNSD" stays as it is."""
    return text[0].lower() + text[1:] if text[:4] == "The " else text


def has_detector(config: Mapping[str, Any]) -> bool:
    """Whether a pretraining config runs a false-negative detector (loss ``false``, whatever its ``loss.detector``:
    the default; YAML's bare ``false`` counts too; InfoNCE and DCL detect nothing), read
    from the raw dict of ``Run.config()``; an empty (unreadable) config and a fine-tuning or comparison config have
    none."""
    if not config or kind_of_config(dict(config)) != "pretrain":
        return False
    loss = config.get("loss") if isinstance(config.get("loss"), Mapping) else {}
    name = loss.get("name", "false")
    return name is False or name == "false"


@dataclass(frozen=True)
class TreatmentEffect:
    """How much the treatment changed a run with a detector: treated pairs per step and the share of steps with any.
    FNCC (FALSE's treatment) *calibrates* a flagged pair; eliminate and attract treat every flagged pair, so for them
    "calibrated" (the records' word) means "treated".

    Why: FALSE only differs from its base method where a flagged pair passes the gate (the anchor's positive
    cosine >= threshold) with alpha > 0. Under the reference's global selection that can be one pair in dozens of
    steps, and the run is then, in effect, SimCLR or MoCo: its losses equal the baseline's to 4 decimals.
    """

    base: str  # the base method's name: SimCLR, MoCo v2
    steps: int  # steps trained
    steps_calibrated: int  # steps with at least one calibrated pair
    calibrated: int
    flagged: int
    alpha: float
    threshold: float
    selection: str = "global"
    top_cos_pos: float | None = None  # the highest anchor-positive cosine among the flags, where known
    detector: str = "fnsd"
    treatment: str = "fncc"
    similarity: float | None = None  # nearest / support: the cosine cut-off, where set

    @property
    def calibrates(self) -> bool:
        """FNCC: alpha, the gate and the word "calibrated" apply; eliminate and attract treat every flag."""
        return self.treatment == "fncc"

    def caption(self) -> str:
        """The figures as one sentence: "FNCC's treatment: calibration fired in ...", "The treatment (eliminate)
        applied in ..."."""
        text = self.figures()
        return f"FNCC's treatment: {text}." if self.calibrates else f"{text[0].upper()}{text[1:]}."

    @property
    def per_step(self) -> float:
        return self.calibrated / self.steps if self.steps else 0.0

    @property
    def share(self) -> float:
        """Share of the steps with any calibrated pair."""
        return self.steps_calibrated / self.steps if self.steps else 0.0

    @property
    def negligible(self) -> bool:
        """The treatment changed (almost) nothing: alpha is 0 (FNCC), or after enough steps it applied in fewer
        than 1 step in 10 to fewer than 0.1 pairs per step."""
        if self.alpha == 0 and self.calibrates:
            return self.steps > 0
        return self.steps >= VERDICT_MIN_STEPS and self.share < NEAR_ZERO_SHARE and \
            self.per_step < NEAR_ZERO_PER_STEP

    def figures(self) -> str:
        """"calibration fired in 1 of 40 steps (0.03 calibrated pairs per step)" (FNCC), "the treatment (eliminate)
        applied in 3 of 40 steps (0.10 treated pairs per step)" (the others), or why it never did."""
        if self.steps == 0:
            return "no step trained yet"
        who = detector_words(self.detector)
        if self.calibrates:
            did, never, pairs = "calibration fired", "calibration never fired", "calibrated pair"
        else:
            did = f"the treatment ({self.treatment}) applied"
            never, pairs = f"the treatment ({self.treatment}) never applied", "treated pair"
        if self.calibrated == 0:
            text = f"{never} in {self.steps} step{_s(self.steps)}"
            if self.flagged == 0:
                return text + f" ({_lower_first(who)} flagged no pair)"
            if not self.calibrates:  # eliminate and attract have no gate: every flag is treated
                return text
            why = f"{_lower_first(who)} flagged {self.flagged} pair{_s(self.flagged)}, but no flagged anchor's " \
                  f"positive cosine reached the threshold {self.threshold:.2f}"
            if self.top_cos_pos is not None:  # to the digits that show it below the gate ("0.90" read as 0.90 met)
                digits = next((d for d in range(2, 7) if round(self.top_cos_pos, d) < self.threshold), 6)
                why += f": the highest was {self.top_cos_pos:.{digits}f}"
            return f"{text} ({why})"
        return (f"{did} in {self.steps_calibrated} of {self.steps} step{_s(self.steps)} "
                f"({amount(self.per_step)} {pairs}{'' if self.per_step == 1 else 's'} per step)")

    def verdict(self) -> str | None:
        """One plain sentence when the run is, in effect, its base method; None otherwise."""
        if not self.negligible:
            return None
        if self.alpha == 0 and self.calibrates:
            return (f"alpha is 0, so a calibrated pair still counts fully as a negative and the loss is exactly "
                    f"{self.base}'s: this run is, in effect, {self.base}.")
        text = self.figures()
        return f"{text[0].upper()}{text[1:]}: this run is, in effect, {self.base}."

    def advice(self) -> str | None:
        """What would make the treatment apply more (FNCC: calibrate more), for a negligible run."""
        if not self.negligible or self.alpha == 0 and self.calibrates:
            return None
        if self.calibrates and self.flagged and self.calibrated < self.flagged / 2:
            if self.calibrated == 0:  # the figures before it already name the gate and its threshold
                return "A lower threshold calibrates more of them."
            return (f"Most flags did not pass the gate (the anchor's positive cosine ≥ threshold "
                    f"{self.threshold:.2f}): a lower threshold calibrates more of them.")
        more = "calibrates" if self.calibrates else "treats"
        if self.detector == "fnsd" and self.selection == "global":
            return ("The global selection flags about one pair per batch: per-anchor selection (each anchor flags "
                    f"its own top-k) {more} more.")
        if self.detector in ("nearest", "support") and self.similarity is not None:
            return (f"Few negatives reached the similarity {self.similarity:.2f}: a lower similarity, or none (each "
                    f"anchor flags its own top-k), {more} more.")
        return None

    def cell(self) -> str:
        """The figures in a few characters, for a table: "≈ SimCLR: 1/40 steps, 0.03/step". The verdict leads, so
        that a narrow column still shows it."""
        if self.steps == 0:
            return "no step yet"
        text = f"{self.steps_calibrated}/{self.steps} steps, {amount(self.per_step)}/step"
        return (f"≈ {self.base}: " if self.negligible else "") + text


def _s(n: float) -> str:
    return "" if n == 1 else "s"


def amount(value: float) -> str:
    """A rate as people read it: 0.03, 1.50, 12; a small nonzero rate keeps one significant digit (0.004)."""
    if value == 0:
        return "0"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.2f}" if value >= 0.01 else f"{value:.1g}"


def treatment_effect(config: Mapping[str, Any], counts: pd.DataFrame | Sequence[Mapping[str, Any]],
                     steps: int | None = None, top_cos_pos: float | None = None) -> TreatmentEffect | None:
    """The treatment effect of a run from its raw config (``Run.config()``: its detector and treatment too) and its
    pair counts per step (``Run.pair_counts()``: step, flagged, calibrated, i.e. treated); ``steps`` trained
    (``status.json``'s step) when the counts stop earlier. None for a run without a detector (loss ``info_nce``, or
    no readable config)."""
    if not has_detector(config):
        return None
    loss = config.get("loss") if isinstance(config.get("loss"), Mapping) else {}
    defaults = PretrainConfig.model_fields["loss"].default
    frame = counts if isinstance(counts, pd.DataFrame) else pd.DataFrame(list(counts))
    if frame.empty:
        frame = pd.DataFrame({"step": [], "flagged": [], "calibrated": []})
    last = int(frame["step"].max()) if len(frame) else 0
    calibrated = frame["calibrated"].to_numpy(float)
    method = str(config.get("method") or "simclr")
    similarity = loss.get("similarity", defaults.similarity)
    return TreatmentEffect(
        base=method_label(method), steps=max(int(steps or 0), last),
        steps_calibrated=int((calibrated > 0).sum()), calibrated=int(calibrated.sum()),
        flagged=int(frame["flagged"].to_numpy(float).sum()), alpha=float(loss.get("alpha", defaults.alpha)),
        threshold=float(loss.get("threshold", defaults.threshold)),
        selection=str(loss.get("selection", defaults.selection)), top_cos_pos=top_cos_pos,
        detector=str(loss.get("detector", defaults.detector)), treatment=str(loss.get("treatment", defaults.treatment)),
        similarity=None if similarity is None else float(similarity))


def treatment_of_run(run: Run, counts: pd.DataFrame | Sequence[Mapping[str, Any]] | None = None,
                     top_cos_pos: float | None = None) -> TreatmentEffect | None:
    """:func:`treatment_effect` of a run folder (its counts read from ``fns.jsonl`` unless given)."""
    config = run.config()
    if not has_detector(config):
        return None
    return treatment_effect(config, run.pair_counts() if counts is None else counts,
                            run.recorded_step(), top_cos_pos)


# ------------------------------------------------------------------------------------------------ labels
def base_rate(dominant: np.ndarray) -> float:
    """P(two distinct tiles drawn at random share their dominant class) = sum_c n_c (n_c - 1) / (N (N - 1)).

    Exact for sampling without replacement (sum p_c^2 would count a tile paired with itself); tiles without a
    class are left out, as they are from the flags' precision.
    """
    dominant = np.asarray(dominant, np.int64)
    dominant = dominant[dominant != NO_CLASS]
    n = len(dominant)
    if n < 2:
        return float("nan")
    counts = np.bincount(dominant).astype(np.float64)
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def same_class(pairs: pd.DataFrame, dominant: np.ndarray) -> pd.Series:
    """Whether anchor and candidate tile share their dominant class (a "correct" flag), per pair.

    Raises ValueError when a pair names a tile the data set does not have: the data set changed since the run.
    """
    n = len(dominant)
    idx = pairs[["anchor_index", "candidate_index"]].to_numpy()
    if idx.size and (idx.max() >= n or idx.min() < 0):
        bad = int(idx.max() if idx.max() >= n else idx.min())
        raise ValueError(f"fns.jsonl names tile {bad}, but the data set has {n} tiles: "
                         "was it rebuilt with other settings since the run?")
    return pd.Series(dominant[idx[:, 0]] == dominant[idx[:, 1]], index=pairs.index)
