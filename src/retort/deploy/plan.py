"""Planning a compression search before any training (``retort compress``): which student shapes can meet a
budget on this machine, predicted by a cost model fitted here, so that only those (and the nearest misses)
are distilled.

The cost of one call at batch 1 on ``n`` tokens of an encoder of ``L`` layers, width ``h`` and FFN width
``f`` is modelled as

    ms = overhead + per_layer * L + per_mmac * MACs / 10^6,    MACs = L * n * (4 h^2 + 2 h f + 2 n h)

(the four attention projections, the FFN's two matrices, the attention scores and their weighted sum; the
embedding lookup and the head are small and fall into the overhead). ``per_layer`` is what a layer costs
beyond its arithmetic (kernel calls, normalisations, the framework's own work), which dominates short
inputs at batch 1. The three coefficients are fitted by non-negative least squares on shapes timed on
this machine in the backend that will be shipped (``CostModel.fit``): the teacher and a few probe shapes.

Everything here is pure arithmetic on shapes and timings (numpy, scipy): the timing itself is the
caller's (``commands/compress.py``), so the planner is tested without a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from retort.errors import ConfigError


@dataclass(frozen=True)
class Shape:
    """An encoder's shape: layers, width, attention heads and FFN width."""

    layers: int
    hidden: int
    heads: int
    ffn: int

    @property
    def name(self) -> str:
        """``LxH``, with ``-fF`` when the FFN is not 4x the width (``4x256-f512``)."""
        return f"{self.layers}x{self.hidden}" + ("" if self.ffn == 4 * self.hidden else f"-f{self.ffn}")

    def macs(self, tokens: float) -> float:
        """Multiply-accumulates of one input of ``tokens`` tokens through the layers (see the module)."""
        h, f, n = self.hidden, self.ffn, tokens
        return self.layers * n * (4 * h * h + 2 * h * f + 2 * n * h)

    def parameters(self, vocab: int, positions: int, labels: int, types: int = 2) -> int:
        """Weights of a BERT-style classifier of this shape: embeddings (words, positions, token types and
        their norm), each layer (attention, FFN, two norms) and the head (pooler and classifier)."""
        h, f = self.hidden, self.ffn
        embeddings = (vocab + positions + types) * h + 2 * h
        layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
        head = h * h + h + h * labels + labels
        return embeddings + self.layers * layer + head


@dataclass(frozen=True)
class CostModel:
    """Predicted milliseconds per call: ``overhead_ms + layer_ms * L + mmac_ms * MACs / 1e6``."""

    overhead_ms: float
    layer_ms: float
    mmac_ms: float

    @classmethod
    def fit(cls, points: list[tuple[Shape, float, float]]) -> CostModel:
        """The non-negative least-squares fit to ``(shape, tokens, measured ms)`` points, weighted so that each
        point's relative error counts alike (a 2 ms probe matters as much as a 30 ms teacher). At least
        three points of two or more depths are needed."""
        from scipy.optimize import nnls  # noqa: PLC0415  (scipy: only when fitting)

        if len(points) < 3 or len({s.layers for s, _, _ in points}) < 2:
            raise ConfigError("the cost model needs three or more timed shapes of at least two depths")
        a = np.array([[1.0, s.layers, s.macs(n) / 1e6] for s, n, _ in points])
        y = np.array([ms for _, _, ms in points], dtype=float)
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ConfigError(f"timings must be positive numbers, not {y.tolist()}")
        w = 1.0 / y
        coef, _ = nnls(a * w[:, None], y * w)
        return cls(*map(float, coef))

    def predict(self, shape: Shape, tokens: float) -> float:
        """Milliseconds of one call of ``shape`` on ``tokens`` tokens at batch 1."""
        return self.overhead_ms + self.layer_ms * shape.layers + self.mmac_ms * shape.macs(tokens) / 1e6

    def relative_errors(self, points: list[tuple[Shape, float, float]]) -> list[float]:
        """(predicted - measured) / measured of each point."""
        return [(self.predict(s, n) - ms) / ms for s, n, ms in points]


def candidate_shapes(teacher: Shape, head_size: int, ffn_ratios: tuple[int, ...] = (4, 2)) -> list[Shape]:
    """The shapes a search may train: every depth up to the teacher's, every width that is a multiple of
    ``2 * head_size`` up to the teacher's (heads keep the teacher's head size, so pruning applies), and FFN
    widths of ``ffn_ratios`` times the width (never wider than the teacher's); the teacher's own width with
    its own FFN. Sorted by MACs, smallest first."""
    step = 2 * head_size
    widths = sorted({*range(step, teacher.hidden + 1, step), teacher.hidden})
    shapes = set()
    for layers in range(1, teacher.layers + 1):
        for h in widths:
            if h % head_size:
                continue
            ffns = {teacher.ffn} if h == teacher.hidden else {r * h for r in ffn_ratios if r * h <= teacher.ffn}
            shapes.update(Shape(layers, h, h // head_size, f) for f in ffns)
    shapes.discard(teacher)
    return sorted(shapes, key=lambda s: (s.macs(32), s.layers))


def widest(meeting: list[dict], keep: int, min_layers: int = 1) -> list[dict]:
    """``keep`` rows of ``meeting``: the widest widths first, at each width its deepest shape (then the widest
    FFN), among shapes of at least ``min_layers`` layers when any meets the budget at that depth.

    Why width first: a student pruned from the teacher keeps more of it when it is wide. On STS-B with
    all-MiniLM-L6-v2 (6x384, docs/results.md, "The frontier on three tasks" and issue #30's search),
    pruned and general-distilled students of about equal cost kept 97% of the teacher at width 312 and
    256 (4x312, 4x256-f512 with 8 epochs) but 65% at 6x192 and 92% at 5x192 (held-out), and shallow ones
    lose as much: 2x384 kept 71%, 3x384 92%. The first plan of that search, which chose by cost alone
    (the slowest that met, then smaller ones down to a third of its time), trained 5x192, 6x128-f256 and
    4x64, none near the floor."""
    deep = [r for r in meeting if r["layers"] >= min_layers] or meeting
    best: dict[int, dict] = {}
    for r in deep:
        if r["hidden"] not in best or (r["layers"], r["ffn"]) > (best[r["hidden"]]["layers"], best[r["hidden"]]["ffn"]):
            best[r["hidden"]] = r
    return [best[w] for w in sorted(best, reverse=True)[:keep]]


@dataclass(frozen=True)
class Budget:
    """What the user can afford: a speed-up over the teacher (as they run it, PyTorch fp32), a speed-up over
    the teacher's own export in the shipped backend (same engine: int8 against int8), a latency, a size."""

    speedup: float | None = None
    latency_ms: float | None = None
    max_params: int | None = None
    speedup_backend: float | None = None

    def __post_init__(self) -> None:
        if (
            self.speedup is None
            and self.latency_ms is None
            and self.max_params is None
            and self.speedup_backend is None
        ):
            raise ConfigError("give a budget: --speedup, --speedup-backend, --latency-ms or --max-params")
        for name, value in (("--speedup", self.speedup), ("--latency-ms", self.latency_ms),
                            ("--speedup-backend", self.speedup_backend)):  # fmt: skip
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ConfigError(f"{name} {value}: a positive number")
        if self.max_params is not None and self.max_params < 1:
            raise ConfigError(f"--max-params {self.max_params}: a positive whole number")

    def target_ms(self, teacher_ms: float, backend_ms: float | None = None) -> float | None:
        """The latency a student must meet: the tightest of ``teacher_ms / speedup`` (the PyTorch teacher),
        ``backend_ms / speedup_backend`` (the teacher's own export) and ``latency_ms``."""
        over_export = self.speedup_backend and backend_ms and backend_ms / self.speedup_backend
        targets = [t for t in (self.speedup and teacher_ms / self.speedup, over_export, self.latency_ms) if t]
        return min(targets) if targets else None


def _row(s: Shape, ms: float, timed: bool, params: int, target, floor: float, budget: Budget, teacher: Shape) -> dict:
    """One candidate of ``make_plan``: its shape, latency (a timed probe's or the cost model's), size, start,
    whether it meets the budget and why not."""
    why = []
    if target is not None and target <= floor:
        why.append(f"the budget {target:.3f} ms is under an empty call ({floor:.3f} ms) on this machine")
    elif target is not None and ms > target:
        why.append(f"predicted {ms:.2f} ms > {target:.2f} ms")
    if budget.max_params is not None and params > budget.max_params:
        why.append(f"{params:,} parameters > {budget.max_params:,}")
    start = "teacher layers" if (s.hidden, s.ffn) == (teacher.hidden, teacher.ffn) else "pruned from the teacher"
    return {**asdict(s), "name": s.name, "predicted_ms": ms, "parameters": params, "start": start,
            "latency_from": "timed probe" if timed else "cost model",
            "fits_size": budget.max_params is None or params <= budget.max_params,
            "meets": not why, "why_not": "; ".join(why)}  # fmt: skip


def make_plan(
    teacher: Shape,
    teacher_ms: float,
    cost: CostModel,
    budget: Budget,
    tokens: float,
    head_size: int,
    vocab: int,
    positions: int,
    labels: int,
    keep: int = 3,
    student_vocab: int | None = None,
    teacher_backend_ms: float | None = None,
    timed: dict[str, float] | None = None,
    headroom: float = 0.0,
) -> dict:
    """Which candidates to train, in order, and why each other one is left out.

    A candidate meets the budget when its predicted latency is within the target and its size within
    ``max_params``. ``keep`` of those that meet it are chosen, the widest widths first and the deepest at
    each, of at least half the teacher's depth (``widest``: the likeliest to hold the quality floor), plus
    the nearest miss on the other side of the target (the cost model's error could put it inside). With none
    meeting, nothing is trained and ``closest`` names the three fastest (exit 3 before any training). A target
    at or below an empty call (the fitted overhead, at least half the smallest candidate's prediction) meets
    nothing (``unreachable``): a budget is a fact about this machine, so it is "not met" (exit 3), not a
    malformed input (exit 2). ``student_vocab``: the students' word embeddings (``models/vocab.py``).
    ``teacher_backend_ms``: the teacher's own export in the backend (for ``speedup_backend``). ``timed``:
    shape name -> ms of a probe of that very shape timed here, used instead of the cost model's prediction
    (``worth_timing`` says which to time). ``headroom``: a share of the target left free for timing noise:
    candidates must be predicted under ``(1 - headroom) * target`` (``plan_target_ms``); the measured verdict
    after training still holds them to the target itself."""
    budget_target = budget.target_ms(teacher_ms, teacher_backend_ms)
    target = budget_target and budget_target * (1 - headroom)
    shapes = candidate_shapes(teacher, head_size)
    smallest = min(shapes, key=lambda s: cost.predict(s, tokens)) if shapes else None
    # an empty model's cost: the fitted overhead, or half the smallest candidate's prediction when the fit
    # puts the overhead near zero (noisy timings can): nothing is faster
    floor = max(cost.overhead_ms, 0.5 * cost.predict(smallest, tokens)) if smallest else cost.overhead_ms
    timed = timed or {}
    rows = []
    for s in shapes:
        ms = timed.get(s.name, cost.predict(s, tokens))  # a probe of this very shape timed here, else predicted
        params = s.parameters(student_vocab or vocab, positions, labels)
        rows.append(_row(s, ms, s.name in timed, params, target, floor, budget, teacher))
    meeting = sorted((r for r in rows if r["meets"]), key=lambda r: -r["predicted_ms"])
    chosen = widest(meeting, keep, min_layers=max(2, teacher.layers // 2))
    misses = sorted((r for r in rows if not r["meets"] and (target is None or r["predicted_ms"] > target)),
                    key=lambda r: r["predicted_ms"])  # fmt: skip
    edge = [m for m in misses[:1] if chosen and not (budget.max_params and m["parameters"] > budget.max_params)]
    for r in rows:
        r["chosen"] = r in chosen or r in edge
        if r in edge:
            r["role"] = "nearest miss (the cost model's error could put it inside)"
        elif r in chosen:
            r["role"] = "meets the budget"
        elif r["meets"]:
            r["why_not"] = "meets the budget; a deeper shape of its width, or a wider one, is trained (``widest``)"
    plan = {
        "teacher": {
            **asdict(teacher),
            "name": teacher.name,
            "measured_ms": teacher_ms,
            "parameters": teacher.parameters(vocab, positions, labels),
        },  # fmt: skip
        "budget": asdict(budget),
        "target_ms": budget_target,
        "plan_target_ms": target,
        "tokens": tokens,
        "cost_model": asdict(cost),
        "met": bool(chosen),
        "train": [r["name"] for r in chosen + edge],
        "candidates": rows,
    }
    if not chosen:
        plan["closest"] = [
            f"{r['name']} ({r['predicted_ms']:.3f} ms)" for r in sorted(rows, key=lambda r: r["predicted_ms"])[:3]
        ]
    if target is not None and target <= floor:
        plan["unreachable"] = f"{target:.3f} ms a call is faster than an empty model here ({floor:.3f} ms)"
    return plan


def worth_timing(plan: dict, min_layers: int, tolerance: float = 0.25, most: int = 8) -> list[str]:
    """The candidates whose latency decides the plan and is only predicted, to time as probes of their own
    shape before anything trains (seconds each, against an hour of training on a wrong guess): per width, the
    deepest shape of at least ``min_layers`` layers (then the widest FFN) predicted within ``1 + tolerance``
    of the target, unless a timed one of that width already meets it; and every untimed chosen one. At most
    ``most``, the chosen first.

    Why: the cost model is linear in layers and multiply-adds, but kernels are not, and this machine's timings
    drift: on AVX-512 VNNI cores (docs/results.md, #30 session 2026-12-06 morning) random int8 probes at 19
    tokens in one bench ran 3x320-f640 as fast as 3x256 (3.05x and 3.10x the int8 teacher) though it has half
    again the multiply-adds, and trained candidates measured 7-15% slower than the cost model predicted."""
    target = plan["plan_target_ms"]
    rows = [r for r in plan["candidates"] if r["fits_size"]]
    chosen = [r["name"] for r in rows if r["chosen"] and r["latency_from"] == "cost model"]
    if target is None:
        return chosen[:most]
    met_widths = {r["hidden"] for r in rows if r["latency_from"] == "timed probe" and r["predicted_ms"] <= target}
    near = [r for r in rows if r["latency_from"] == "cost model" and r["layers"] >= min_layers
            and r["hidden"] not in met_widths and r["predicted_ms"] <= (1 + tolerance) * target]  # fmt: skip
    deepest = widest(near, keep=len({r["hidden"] for r in near}))
    return list(dict.fromkeys(chosen + [r["name"] for r in deepest]))[:most]


def training_seconds(
    student: Shape, teacher: Shape, rate: float, *, tokens: float, rows: int, epochs: int,
    sequences: int | None = None, length: int = 128, cached: bool = True,
) -> dict[str, float]:  # fmt: skip
    """Predicted seconds of a candidate's stages at ``rate`` seconds per million multiply-adds of training (a
    forward and backward are three forwards; the teacher's forward runs once, its outputs cached, else once an
    epoch when not ``cached``): the task
    stage on ``rows`` rows of ``tokens`` tokens for ``epochs`` epochs, and with ``sequences`` a general stage
    of one epoch over that many corpus sequences of ``length`` tokens. Overheads that do not scale with
    arithmetic are not modelled: small students run longer than this says (the search corrects its ETA by
    the stages it has measured)."""
    out = {}
    if sequences:
        out["general"] = rate * sequences * (3 * student.macs(length) + teacher.macs(length)) / 1e6
    teacher_passes = 1 if cached else epochs
    out["task"] = rate * rows * (3 * epochs * student.macs(tokens) + teacher_passes * teacher.macs(tokens)) / 1e6
    return out
