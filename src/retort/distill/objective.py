"""Objectives: named, weighted sums of loss terms. They are ``nn.Module``s so that anything with
parameters (projections, layer weights) lands in the state dict, the optimizer and checkpoints.

An objective states which intermediate outputs it reads (``needs``) and returns the total loss plus
every term, weighted and unweighted, for the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from retort.distill import losses
from retort.distill.layer_weights import LayerWeights
from retort.errors import ConfigError
from retort.models import layer_map
from retort.models.families import family_of
from retort.models.outputs import ModelOutput, Needs


@dataclass
class LossOutput:
    """What an objective returns for one batch: the total to backpropagate, each active term unweighted
    with the weight it entered the total with, and per-layer values for the log."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # unweighted value of each term
    weights: dict[str, float] = field(default_factory=dict)  # weight each term entered the total with
    extras: dict[str, float] = field(default_factory=dict)  # per-layer losses and weights, for the log

    def log_values(self) -> dict[str, float]:
        """``loss``, ``loss/NAME`` (unweighted) and ``weighted/NAME`` for the log."""
        out = {"loss": float(self.total.detach())}
        for name, value in self.terms.items():
            v = float(value.detach())
            out[f"loss/{name}"] = v
            out[f"weighted/{name}"] = v * self.weights.get(name, 1.0)
        out.update(self.extras)
        return out


class Objective(nn.Module):
    """Base class: ``forward(student, teacher, batch) -> LossOutput``."""

    student_needs = Needs()
    teacher_needs = Needs()
    uses_teacher = True
    progress = 0.0  # the share of the schedule's steps done before this one; the trainer sets it

    def formula(self) -> str:
        """The loss as a readable formula with its weights (``L = 0.9*L_soft + ...``), for the run log."""
        raise NotImplementedError

    def layer_inputs(self, teacher: ModelOutput | None) -> tuple[torch.Tensor, ...] | None:
        """Inputs that teacher-force the student's layers (see ``Distillation``); None: a normal forward."""
        return None

    def teacher_layers(self) -> dict[str, set[int]]:
        """Which entries of the teacher's ``hidden_states``, ``attention_scores`` and ``values`` tuples
        the objective reads (a teacher-output cache keeps only those)."""
        return {"hidden_states": set(), "attention_scores": set(), "values": set()}

    def combine(self, terms: dict[str, torch.Tensor], weights: dict[str, float]) -> LossOutput:
        """The weighted sum of the terms whose weight is not 0; raises ``ConfigError`` when none is."""
        active = {k: v for k, v in terms.items() if weights.get(k, 0.0) != 0.0}
        if not active:
            raise ConfigError("the objective has no active term (every weight of this stage is 0)")
        total = sum(weights[k] * v for k, v in active.items())
        return LossOutput(total=total, terms=active, weights={k: weights[k] for k in active})


class FineTune(Objective):
    """Plain supervised fine-tuning (the teacher's own training): the hard loss alone."""

    uses_teacher = False

    def __init__(self, regression: bool, multi_label: bool = False):
        super().__init__()
        self.regression, self.multi_label = regression, multi_label

    def formula(self) -> str:
        """Always ``L = L_hard``."""
        return "L = L_hard"

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch) -> LossOutput:
        """The hard loss of the student's logits on ``batch["labels"]`` (the teacher is not used)."""
        terms = {"hard": losses.hard_loss(student.logits, batch["labels"], self.regression, None, self.multi_label)}
        return self.combine(terms, {"hard": 1.0})


STAGES = ("all", "intermediate", "prediction", "progressive", "attention")


def trainable_parameters(stage: str, model: nn.Module, layer: int | None = None) -> None:
    """The ``attention`` stage trains a linear student's learned feature maps (``*.feature_map.*``) and
    freezes everything else, so the linear attention learns to mimic the teacher's softmax maps
    before the whole student is distilled (Hedgehog's attention transfer). The ``progressive`` stage
    trains student layer ``layer`` (1-based) alone, and the embeddings with layer 1 (MobileBERT's
    progressive knowledge transfer). Other stages train all."""
    if stage == "progressive":
        encoder = model.encoder if hasattr(model, "encoder") and hasattr(model, "embed") else model  # a bi-encoder
        fam = family_of(encoder.config)
        if layer is None or not 1 <= layer <= encoder.config.num_hidden_layers:
            raise ConfigError(
                f"stage progressive needs --progressive-layer 1..{encoder.config.num_hidden_layers} (got {layer})"
            )
        prefix = fam.layer_prefix(encoder).format(i=layer - 1)
        embeddings = f"{encoder.base_model_prefix}.embeddings."
        for name, p in encoder.named_parameters():
            p.requires_grad_(name.startswith(prefix) or (layer == 1 and name.startswith(embeddings)))
        return
    if stage != "attention":
        return
    names = [n for n, _ in model.named_parameters() if ".feature_map." in n]
    if not names:
        raise ConfigError(
            "stage 'attention' trains learned attention feature maps only; this student has none "
            "(use --attention linear --feature-map hedgehog)"
        )
    for name, p in model.named_parameters():
        p.requires_grad_(".feature_map." in name)


def _term_weights(cfg) -> dict[str, float]:
    """Each term's weight under ``cfg.stage``: the terms the stage leaves out weigh 0."""
    stage = cfg.stage
    if stage not in STAGES:
        raise ConfigError(f"stage {stage!r}: choose {', '.join(STAGES)}")
    inter, pred = stage in ("all", "intermediate", "progressive"), stage in ("all", "prediction")
    weights = {
        "soft": cfg.alpha if pred else 0.0,
        "hard": cfg.hard_weight if pred else 0.0,
        "hidden": cfg.beta if inter else 0.0,
        "attn": cfg.gamma if inter or stage == "attention" else 0.0,
        "value": cfg.value_weight if inter else 0.0,
        "cos": cfg.cosine_weight if inter else 0.0,
    }
    if stage == "progressive":  # layer l alone: its hidden state and its attention
        weights["value"] = weights["cos"] = 0.0
    return weights


class Distillation(Objective):
    """The objective of every distillation method: ``kd``, ``distilbert``, ``tinybert``, ``minilm``,
    ``mobilebert``, ``multilevel`` and ``dse`` are each a setting of its weights (see ``presets.py``):

        L = alpha * L_soft + hard_weight * L_hard + beta * L_hidden + gamma * L_attn
            + value_weight * L_value + cosine_weight * L_cos (+ layer-weight regulariser)

    ``L_hidden`` and ``L_attn`` are per-layer losses combined with ``LayerWeights`` (static, set from
    each layer's loss, or learned). Projections for hidden states when the widths differ are
    ``nn.Linear`` layers held here, so they are trained, checkpointed and left out of the exported student.
    ``stage`` keeps only the intermediate terms (``intermediate``), only the output terms
    (``prediction``), all of them (``all``), one layer's hidden and attention terms (``progressive``), or
    only the attention term (``attention``: attention transfer for a linear student with learned feature
    maps, which are then the only parameters trained; see ``trainable_parameters``).
    """

    def __init__(self, cfg, regression: bool, student_config, teacher_config, multi_label: bool = False):
        super().__init__()
        self.cfg, self.regression, self.multi_label = cfg, regression, multi_label
        self._read_models(student_config, teacher_config)
        s_layers = student_config.num_hidden_layers
        self.layer_map = layer_map.build(cfg.layer_map, s_layers, self.teacher_layer_count, cfg.layer_list)
        self.weights = _term_weights(cfg)
        self.hidden_pairs, self.attn_pairs = self._layer_pairs(cfg, s_layers)
        if self.weights["attn"] and self.s_heads != self.t_heads and not cfg.head_average:
            raise ConfigError(
                f"attention term: the student has {self.s_heads} heads and the teacher "
                f"{self.t_heads}; give --head-average (objective.head_average: true) to compare head-averaged maps"
            )
        self.proj = self._projections()
        self.relation_heads = cfg.relation_heads or self.t_heads
        self.hidden_weights, self.attn_weights = self._layer_weights(cfg)
        self._set_needs(cfg)

    def _read_models(self, student_config, teacher_config) -> None:
        """The two models' shapes, and what each side's attention target is (models/families.py): pre-softmax
        scores where Q K^T / sqrt(d) is the family's true score, the model's own probabilities where it is
        not; a linear student gives explicit normalised maps, and its term is always a KL."""
        s_family, t_family = family_of(student_config), family_of(teacher_config)
        self.linear_student = s_family.kernel == "linear"
        self.s_attention, self.t_attention = s_family.attention, t_family.attention
        self.teacher_layer_count = teacher_config.num_hidden_layers
        self.s_width, self.t_width = student_config.hidden_size, teacher_config.hidden_size
        self.s_heads, self.t_heads = student_config.num_attention_heads, teacher_config.num_attention_heads

    def _layer_pairs(self, cfg, s_layers: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(student layer, teacher layer) pairs of the hidden-state term (0 = embeddings) and of the
        attention term; the ``progressive`` stage keeps ``cfg.progressive_layer`` alone in both."""
        hidden_pairs = ([(0, 0)] if cfg.embeddings else []) + list(enumerate(self.layer_map, start=1))
        if cfg.attention_layers == "last":
            attn_pairs = [(s_layers, self.teacher_layer_count)]
        else:
            attn_pairs = list(enumerate(self.layer_map, start=1))
        if cfg.stage == "progressive":  # layer l alone: its hidden state and its attention
            layer = cfg.progressive_layer
            if layer is None or not 1 <= layer <= s_layers:
                raise ConfigError(f"stage progressive needs --progressive-layer 1..{s_layers} (got {layer})")
            hidden_pairs = [(layer, self.layer_map[layer - 1])]
            attn_pairs = [(layer, self.layer_map[layer - 1])]
        return hidden_pairs, attn_pairs

    def _projections(self) -> nn.ModuleList | None:
        """Student-to-teacher width projections, one per hidden-state pair (at least one for the cosine
        term, which uses the last); None when the widths match or neither term is on."""
        need_proj = self.s_width != self.t_width and (self.weights["hidden"] or self.weights["cos"])
        if not need_proj:
            return None
        n_proj = len(self.hidden_pairs) if self.weights["hidden"] else 0
        return nn.ModuleList(
            [nn.Linear(self.s_width, self.t_width) for _ in range(max(n_proj, 1 if self.weights["cos"] else 0))]
        )

    def _layer_weights(self, cfg) -> tuple[LayerWeights, LayerWeights]:
        """The per-layer weights of the hidden-state term and of the attention term, in ``cfg.layer_weights`` mode."""
        lw = dict(
            mode=cfg.layer_weights,
            temperature=cfg.weight_temperature,
            window=cfg.weight_window,
            floor=cfg.weight_floor,
            entropy_weight=cfg.weight_entropy,
        )
        return LayerWeights(len(self.hidden_pairs), **lw), LayerWeights(len(self.attn_pairs), **lw)

    def _set_needs(self, cfg) -> None:
        """Which outputs the student and teacher must give, whether the teacher is run at all, and teacher
        forcing (checked: attention stage, linear student, equal widths)."""
        needs = Needs(
            hidden_states=bool(self.weights["hidden"] or self.weights["cos"]),
            attention_scores=bool(self.weights["attn"]),
            values=bool(self.weights["value"]),
        )
        self.student_needs = self.teacher_needs = needs
        self.uses_teacher = any(self.weights[k] for k in ("soft", "hidden", "attn", "value", "cos"))
        self.teacher_forced = bool(cfg.teacher_forced)
        if self.teacher_forced:
            if cfg.stage != "attention" or not self.linear_student:
                raise ConfigError(
                    "objective.teacher_forced is for attention transfer: a linear student and stage 'attention'"
                )
            if self.s_width != self.t_width:
                raise ConfigError("objective.teacher_forced: the student must have the teacher's width")
            self.teacher_needs = needs | Needs(hidden_states=True)

    def layer_inputs(self, teacher: ModelOutput | None) -> tuple[torch.Tensor, ...] | None:
        """Teacher forcing (``objective.teacher_forced``, attention stage): student layer l reads the
        teacher hidden state that student layer l-1 is trained to match (``layer_map[l-1]``; the embedding
        output for the first layer), which is what it will read once the layers below are distilled, and
        its map is fit to the teacher's attention at ``layer_map[l]``, as in the full objective. Each
        layer's feature map is fit alone, so errors of the layers below do not pile up (Hedgehog's
        layer-wise attention transfer). With skipped layers this is not the input the copied weights saw
        in the teacher (layer 6 of a [2, 3, 4, 6] map reads h4, not h5): it is the student's."""
        if not self.teacher_forced:
            return None
        return tuple(teacher.hidden_states[t] for t in [0, *self.layer_map[:-1]])

    def teacher_layers(self) -> dict[str, set[int]]:
        """The teacher's hidden states, attention maps (keyed ``attention_scores`` or ``attention_probs``,
        as the teacher's family gives them) and values that the active terms read."""
        w = self.weights
        t_layers = self.teacher_layer_count
        hidden = {t for _, t in self.hidden_pairs} if w["hidden"] else set()
        if w["cos"]:
            hidden.add(t_layers)
        if self.teacher_forced:
            hidden |= {0, *self.layer_map[:-1]}
        attn = {t - 1 for _, t in self.attn_pairs} if w["attn"] else set()
        values = {t_layers - 1} if w["value"] else set()
        return {"hidden_states": hidden, f"attention_{self.t_attention}": attn, "values": values}

    def formula(self) -> str:
        """The active terms with their weights, the layer map and the layer-weight mode."""
        names = {
            "soft": "L_soft",
            "hard": "L_hard",
            "hidden": "L_hidden",
            "attn": f"L_attn[{self.attention_loss_name()}]",
            "value": "L_value",
            "cos": "L_cos",
        }
        parts = [f"{w:g}*{names[k]}" for k, w in self.weights.items() if w]
        layered = any(self.weights[k] for k in ("hidden", "attn", "value", "cos"))
        extra = f"; layer map {self.layer_map}, layer weights {self.cfg.layer_weights}" if layered else ""
        if self.cfg.gamma_schedule == "decay" and self.weights["attn"]:
            extra += "; the L_attn weight decays linearly to 0"
        return "L = " + " + ".join(parts) + extra

    def attention_loss_name(self) -> str:
        """What the attention term compares, for the formula and the run log."""
        if self.linear_student:
            return f"kl, explicit linear map vs teacher {self.t_attention}"
        if self.s_attention == self.t_attention == "scores":
            return f"{self.cfg.attention_loss} on scores"
        return f"{self.cfg.attention_loss} on probabilities (the model's own attention)"

    def _project(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.proj[i](h) if self.proj is not None else h

    def current_weights(self) -> dict[str, float]:
        """The terms' weights at this point of training (``objective.gamma_schedule``)."""
        if self.cfg.gamma_schedule == "decay" and self.weights["attn"]:
            return {**self.weights, "attn": self.weights["attn"] * max(0.0, 1.0 - self.progress)}
        return self.weights

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch) -> LossOutput:
        """The weighted terms at this point of training, plus the layer-weight regulariser when it has a
        gradient, and each layer's loss and weight in ``extras``."""
        w = self.current_weights()
        mask = student.attention_mask
        terms: dict[str, torch.Tensor] = {}
        extras: dict[str, float] = {}
        reg = student.logits.new_zeros(())
        if w["soft"]:
            if self.regression or self.cfg.soft_loss == "mse":
                terms["soft"] = losses.soft_mse(student.logits, teacher.logits)
            elif self.multi_label:  # per-label sigmoids at temperature tau
                terms["soft"] = losses.soft_binary_kl(student.logits, teacher.logits, self.cfg.temperature)
            else:
                terms["soft"] = losses.soft_kl(student.logits, teacher.logits, self.cfg.temperature)
        if w["hard"] and "labels" in batch:
            terms["hard"] = losses.hard_loss(
                student.logits, batch["labels"], self.regression, batch.get("label_mask"), self.multi_label
            )
        if w["hidden"]:
            per_layer = torch.stack(
                [
                    losses.hidden_mse(self._project(i, student.hidden_states[s]), teacher.hidden_states[t], mask)
                    for i, (s, t) in enumerate(self.hidden_pairs)
                ]
            )
            lw, r = self.hidden_weights(per_layer)
            terms["hidden"] = (lw * per_layer).mean()
            reg = reg + r
            extras.update({f"layer/hidden/{s}": float(v) for (s, _), v in zip(self.hidden_pairs, per_layer.detach())})
            extras.update({f"layer_weight/hidden/{s}": float(v) for (s, _), v in zip(self.hidden_pairs, lw.detach())})
        if w["attn"]:
            per_layer = torch.stack([self._attention(student, teacher, s, t, mask) for s, t in self.attn_pairs])
            lw, r = self.attn_weights(per_layer)
            terms["attn"] = (lw * per_layer).mean()
            reg = reg + r
            extras.update({f"layer/attn/{s}": float(v) for (s, _), v in zip(self.attn_pairs, per_layer.detach())})
            extras.update({f"layer_weight/attn/{s}": float(v) for (s, _), v in zip(self.attn_pairs, lw.detach())})
        if w["value"]:
            terms["value"] = losses.value_relation_kl(student.values[-1], teacher.values[-1], mask, self.relation_heads)
        if w["cos"]:
            h = student.hidden_states[-1]
            h = self.proj[-1](h) if self.proj is not None else h
            terms["cos"] = losses.hidden_cosine(h, teacher.hidden_states[-1], mask)
        out = self.combine(terms, w)
        if reg.requires_grad:
            out.total = out.total + reg
            out.terms["layer_weight_reg"] = reg
            out.weights["layer_weight_reg"] = 1.0
        out.extras = extras
        return out

    def _attention(self, student: ModelOutput, teacher: ModelOutput, s: int, t: int, mask) -> torch.Tensor:
        if self.s_attention == self.t_attention == "scores":
            s_scores, t_scores = student.attention_scores[s - 1], teacher.attention_scores[t - 1]
            if self.cfg.attention_loss == "mse":
                if self.cfg.head_average:
                    s_scores, t_scores = s_scores.mean(1, keepdim=True), t_scores.mean(1, keepdim=True)
                return losses.attention_score_mse(s_scores, t_scores, mask)
            if not self.cfg.head_average:
                return losses.attention_kl(s_scores, t_scores, mask)
        # distributions: from scores by a masked softmax, or as the model gave them (log-probabilities)
        s_lp, t_lp = self._log_probs(student, s, mask), self._log_probs(teacher, t, mask)
        if self.cfg.head_average:  # the mean of the heads' distributions
            s_lp = s_lp.exp().mean(1, keepdim=True).clamp_min(1e-12).log()
            t_lp = t_lp.exp().mean(1, keepdim=True).clamp_min(1e-12).log()
        if self.cfg.attention_loss == "mse" and not self.linear_student:
            return losses.attention_score_mse(s_lp.exp(), t_lp.exp(), mask)  # the same masked MSE, on probabilities
        return losses.row_kl(t_lp, s_lp, mask)

    @staticmethod
    def _log_probs(out: ModelOutput, layer: int, mask) -> torch.Tensor:
        if out.attention_probs is not None and out.attention_probs[layer - 1] is not None:
            return out.attention_probs[layer - 1].clamp_min(1e-12).log()
        return losses.masked_log_softmax(out.attention_scores[layer - 1], mask)
