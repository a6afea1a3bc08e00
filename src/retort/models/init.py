"""How a student is made from its teacher, in one place: which teacher layer each student layer is
copied from, the copy itself (checked: a tensor the student needs and the teacher lacks, or has in
another shape, is an error, never a silent random init; what was copied, zero-filled and left out is
reported), position tables grown past the teacher's, and the linear-attention student's config and
weights from a teacher of any family whose layers are BERT-shaped (``families.Family.bert_names``).
"""

from __future__ import annotations

import copy
import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from retort.errors import ConfigError
from retort.models import layer_map
from retort.models.families import Family, family_of
from retort.models.linear_configuration import LinearBertConfig


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """0-based teacher layer that student layer m (0-based) is copied from: TinyBERT's uniform map."""
    return [t - 1 for t in layer_map.uniform(student_layers, teacher_layers)]


def extend_positions(weight: torch.Tensor, length: int, mode: str = "copy") -> torch.Tensor:
    """Position embeddings for ``length`` positions from a (P, H) table.

    ``copy`` repeats the P learned rows (positions P..2P-1 reuse 0..P-1, as Longformer does), so every
    local pattern the teacher learned stays; ``interpolate`` stretches the table linearly over the new
    length. The first P rows are unchanged by ``copy``.
    """
    p = weight.shape[0]
    if length <= p:
        return weight[:length].clone()
    if mode == "copy":
        return weight.repeat(math.ceil(length / p), 1)[:length].clone()
    if mode == "interpolate":
        return F.interpolate(weight.T[None], size=length, mode="linear", align_corners=True)[0].T.contiguous()
    raise ValueError(f"position extension {mode!r}: choose copy or interpolate")


def position_offset(config) -> int:
    """Rows before the first real position: pad_token_id + 1 for RoBERTa, XLM-R and MPNet, else 0."""
    return (config.pad_token_id or 0) + 1 if family_of(config).padded_positions else 0


def _grow_table(weight: torch.Tensor, rows: int, offset: int, mode: str) -> torch.Tensor:
    """A (rows, H) table from ``weight``: its first ``offset`` rows kept, the real positions extended."""
    return torch.cat([weight[:offset], extend_positions(weight[offset:], rows - offset, mode)])


def bert_view(teacher: nn.Module, student_config) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """The teacher's tensors under BERT's names (its family's ``bert_names``), for the linear student;
    returns (tensors, names zero-filled because the teacher has none, teacher names left out)."""
    fam = family_of(teacher.config)
    if not fam.bert_names:
        raise ConfigError(
            f"a {fam.name} teacher cannot initialise the BERT-shaped linear-attention student (its layers are "
            "not BERT-shaped); use --student-init random"
        )
    state, dropped = {}, []
    for key, value in teacher.state_dict().items():
        new = key
        for pattern, repl in fam.bert_names:
            new = re.sub(pattern, repl, new)
        if new.startswith(("bert.", "classifier.")):
            state[new] = value
        else:
            dropped.append(key)
    pos = "bert.embeddings.position_embeddings.weight"
    if pos in state:
        state[pos] = state[pos][position_offset(teacher.config) :]
    zeros = []
    for name, rows in (
        (pos, student_config.max_position_embeddings),
        ("bert.embeddings.token_type_embeddings.weight", 1),
    ):
        if name not in state:  # DeBERTa-v3 has no absolute positions; DistilBERT, MPNet no token types
            state[name] = torch.zeros(rows, student_config.hidden_size)
            zeros.append(name)
    return state, zeros, dropped


def _layer_pattern(fam: Family, model: nn.Module) -> re.Pattern:
    prefix = fam.layer_prefix(model)
    before, after = prefix.split("{i}")
    return re.compile("^" + re.escape(before) + r"(\d+)" + re.escape(after))


def copy_teacher_weights(teacher: nn.Module, student: nn.Module, position_mode: str = "copy") -> list[int]:
    """Copy embeddings, uniformly mapped layers and the head from the teacher into a same-width student:
    one of the teacher's family (same tensor names), or the linear student (the teacher's tensors under
    BERT's names). Positions past the teacher's table are made with ``extend_positions``. The counts
    go to ``student.retort_copied``; returns the 0-based layer map."""
    s_fam, t_fam = family_of(student.config), family_of(teacher.config)
    mapping = uniform_layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    zeros: list[str] = []
    dropped: list[str] = []
    if s_fam.name == t_fam.name:
        t_state = teacher.state_dict()
        offset = position_offset(teacher.config)
    elif s_fam.name == LinearBertConfig.model_type:
        t_state, zeros, dropped = bert_view(teacher, student.config)
        offset = 0
    else:
        raise ConfigError(
            f"the student is a {s_fam.name} and the teacher a {t_fam.name}: a softmax student is built in the "
            "teacher's own family"
        )
    s_layer = _layer_pattern(s_fam, student)
    s_state = student.state_dict()
    new_state = {}
    for key, want in ((k, v.shape) for k, v in s_state.items()):
        m = s_layer.match(key)
        src = key
        if m:  # student layer i reads teacher layer mapping[i] (same name after the index)
            src = key[: m.start(1)] + str(mapping[int(m.group(1))]) + key[m.end(1) :]
        if src not in t_state:
            continue
        w = t_state[src]
        if key.endswith("position_embeddings.weight") and w.shape != want and w.shape[1:] == want[1:]:
            w = _grow_table(w, want[0], offset, position_mode)
        if w.shape == want:
            new_state[key] = w
        elif not _own_to_the_student(key):
            raise ConfigError(
                f"teacher tensor {src} has shape {tuple(w.shape)}; the student's {key} needs {tuple(want)}"
            )
    missing = [k for k in s_state if k not in new_state and not _own_to_the_student(k) and not _buffer(student, k)]
    if missing:
        raise ConfigError(
            f"{len(missing)} student tensors have no teacher tensor to copy (first: {missing[0]}); "
            f"is the teacher ({t_fam.name}) of a family the student can be made from?"
        )
    student.load_state_dict(new_state, strict=False)
    student.retort_copied = {
        "copied": len(new_state) - len(zeros),
        "zero_filled": zeros,
        "own": len(s_state) - len(new_state),
        "teacher_tensors_left_out": dropped,
    }
    return mapping


def _buffer(model: nn.Module, key: str) -> bool:
    """Non-parameter entries a model makes itself (position ids, ...)."""
    return key not in dict(model.named_parameters())


def _own_to_the_student(key: str) -> bool:
    """Parameters the teacher cannot have: a linear student's feature maps (learned or random features)."""
    return ".feature_map." in key or key.endswith("attention.self.proj")


def linear_config(teacher_config, layers: int, hidden: int, heads: int, intermediate: int,
                  max_positions: int | None = None, **fields) -> LinearBertConfig:  # fmt: skip
    """The linear student's config from a teacher config of any family: its vocabulary, labels, head
    activation and position count (real positions, without RoBERTa's padding offset)."""
    fam = family_of(teacher_config)
    tc = teacher_config
    positions = max_positions or tc.max_position_embeddings - position_offset(tc)
    config = LinearBertConfig(
        vocab_size=tc.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=positions,
        type_vocab_size=tc.type_vocab_size if fam.takes_token_types(tc) else 1,
        layer_norm_eps=float(getattr(tc, "layer_norm_eps", 1e-12)),
        hidden_dropout_prob=float(getattr(tc, "hidden_dropout_prob", getattr(tc, "dropout", 0.1))),
        pad_token_id=tc.pad_token_id,
        head_act=fam.head_act,
        num_labels=tc.num_labels,
        id2label=dict(tc.id2label),
        problem_type=tc.problem_type,
        retort_task=getattr(tc, "retort_task", None),
        retort_task_spec=getattr(tc, "retort_task_spec", None),
        **fields,
    )
    return config


def softmax_config(teacher_config, layers: int, hidden: int, heads: int, intermediate: int,
                   max_positions: int | None = None):  # fmt: skip
    """A student config of the teacher's own family, with fewer or narrower layers."""
    fam = family_of(teacher_config)
    sconf = copy.deepcopy(teacher_config)
    sconf.num_hidden_layers = layers
    sconf.hidden_size = hidden
    sconf.num_attention_heads = heads
    setattr(sconf, fam.intermediate, intermediate)
    if getattr(teacher_config, "embedding_size", None) == teacher_config.hidden_size:  # ELECTRA: no projection
        sconf.embedding_size = hidden
    if getattr(teacher_config, "pooler_hidden_size", None) == teacher_config.hidden_size:  # DeBERTa's pooler
        sconf.pooler_hidden_size = hidden
    if getattr(teacher_config, "layer_types", None):  # ModernBERT: each student layer keeps its source's type
        mapping = uniform_layer_map(layers, teacher_config.num_hidden_layers)
        sconf.layer_types = [teacher_config.layer_types[t] for t in mapping]
    if max_positions:
        sconf.max_position_embeddings = max_positions + position_offset(teacher_config)
    return sconf


def extend_position_table(model: nn.Module, length: int, mode: str = "copy") -> None:
    """Grow a loaded model's position table to ``length`` real positions in place (the existing rows are
    kept), for a checkpoint trained on shorter inputs; its ``position_ids``/``token_type_ids`` buffers grow
    with it. A family without an absolute table (ModernBERT, DeBERTa-v3) is a clear error."""
    fam = family_of(model.config)
    table = fam.position_table(model)
    if table is None:
        raise ConfigError(f"a {fam.name} model has no absolute position table to grow (its positions are relative)")
    offset = position_offset(model.config)
    old = table.weight.data
    rows = length + offset
    new = nn.Embedding(rows, old.shape[1], device=old.device, dtype=old.dtype, padding_idx=table.padding_idx)
    new.weight.data.copy_(_grow_table(old, rows, offset, mode))
    parent_path, _, name = fam.positions.rpartition(".")
    emb = model.base_model.get_submodule(parent_path)
    setattr(emb, name, new)
    if hasattr(emb, "position_ids"):
        emb.position_ids = torch.arange(rows, device=old.device).expand((1, -1))
    if hasattr(emb, "token_type_ids"):
        emb.token_type_ids = torch.zeros((1, rows), dtype=torch.long, device=old.device)
    model.config.max_position_embeddings = rows
