"""Width pruning as a student's start (``--student-init prune``): the teacher's mapped layers, cut down
to the student's width by measured importance, then distilled (NVIDIA's Minitron recipe, Muralidharan
et al. 2024, "Compact Language Models via Pruning and Knowledge Distillation").

The scoring rule: activation-based importance on a sample of the task's training text, one forward pass
of the teacher, every mean over real (non-padding) tokens only:

- **hidden channels** c: sum over every LayerNorm output of the residual stream (the embeddings' and,
  in each kept layer, the attention's and the FFN's) of mean |x_c|;
- **attention heads** h of a layer: mean over tokens of the L2 norm of the head's context vector (its
  slice of the input of the attention's output projection, softmax(QK^T) V);
- **head dimensions** (when the student's head width is smaller than the teacher's): for values, mean
  |context_d|; for queries and keys (which must keep the same dimensions) mean |q_d| * mean |k_d|;
- **MLP neurons** n: mean |act(x W1 + b1)_n|.

The top channels, heads (then dimensions inside each kept head) and neurons are kept, always in the
teacher's order, so that nothing pruned gives back the teacher exactly; every tensor of the student is the
teacher's tensor indexed by those sets. Layers are chosen as for every student (the uniform map). LayerNorm
statistics over fewer channels differ from the teacher's; the distillation that follows repairs that.

Families: every post-norm family whose tensors have BERT names through the adaptor's ``bert_names`` and whose
adaptor says where to measure (``attn_out``, ``attn_norm``, ``ffn_act``, ``out_norm``): bert, roberta,
xlm-roberta, electra, distilbert, mpnet and deberta-v2 (DeBERTa-v3 too). Two rules for relative positions:

- **MPNet** keeps one relative attention bias table, (buckets, heads), shared by every layer. A student keeps
  that table, so every student layer keeps the *same* heads: the set with the highest importance summed over
  the mapped layers (each layer's head scores divided by their mean first, so no layer outweighs the others);
  the head dimensions inside those heads are still chosen per layer. The table keeps those heads' columns.
- **DeBERTa-v2/v3** keeps one relative position embedding table, (2 x buckets, hidden), and its LayerNorm,
  shared by every layer; each layer projects it with its own key and query projections (or ``pos_key_proj``
  and ``pos_query_proj``). The table lives in the hidden space, so it keeps the student's channels, and each
  layer's heads and dimensions are chosen per layer as for BERT (its projections index them).

- **ModernBERT** (pre-norm, fused QKV, gated MLP, rotary positions, local and global layers): channels are
  measured on the outputs of every LayerNorm (each sees the residual stream), neurons on the gated product
  that enters ``mlp.Wo`` (a neuron keeps its input and its gate row of ``Wi``), queries and keys on their
  thirds of ``Wqkv``. Rotary positions pair a head's dimensions with fixed frequencies, so whole heads are kept
  at the teacher's head width (a narrower head is refused); each student layer keeps its source layer's type.

A DeBERTa whose embeddings are narrower than its layers (``embedding_size`` with a projection) is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from retort.errors import ConfigError
from retort.models.families import FAMILIES, family_of
from retort.models.init import softmax_config, uniform_layer_map
from retort.models.outputs import forward

PRUNABLE = tuple(n for n, f in FAMILIES.items() if f.attn_out and (f.bert_names or f.qkv) and f.kernel == "softmax")


@dataclass
class Importance:
    """Scores of the teacher's parts (higher: keep). Per layer lists are indexed by 0-based teacher layer."""

    channels: torch.Tensor  # (H,)
    heads: list[torch.Tensor]  # L x (nh,)
    qk_dims: list[torch.Tensor]  # L x (nh, d)
    v_dims: list[torch.Tensor]  # L x (nh, d)
    neurons: list[torch.Tensor]  # L x (I,)


@torch.inference_mode()
def importance(teacher: nn.Module, batches: list[dict[str, torch.Tensor]]) -> Importance:
    """Activation-based importance of the teacher's channels, heads, head dimensions and neurons."""
    fam = family_of(teacher.config)
    layers = fam.layer_list(teacher)
    nh = teacher.config.num_attention_heads
    width = teacher.config.hidden_size
    d = width // nh
    sums: dict[str, torch.Tensor] = {}
    mask_now: dict[str, torch.Tensor] = {}

    def add(key: str, value: torch.Tensor) -> None:
        sums[key] = sums.get(key, 0) + value

    def tokens(x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (N real tokens, F)
        return x[mask_now["m"].bool()].float()

    hooks = []

    def hook(module: nn.Module, name: str, pre: bool = False) -> None:
        if pre:
            hooks.append(module.register_forward_pre_hook(lambda _m, args: capture(name, args[0])))
        else:
            hooks.append(module.register_forward_hook(lambda _m, _i, out: capture(name, out)))

    def capture(name: str, x: torch.Tensor) -> None:
        if tuple(x.shape[:2]) != tuple(mask_now["m"].shape):  # not the tokens: DeBERTa's projected positions
            return
        x = tokens(x)
        kind, _, i = name.partition(".")
        if kind == "ln":
            add("channels", x.abs().sum(0))
        elif kind == "ctx":  # (N, nh*d) context vectors before the output projection
            ctx = x.view(-1, nh, d)
            add(f"heads.{i}", ctx.norm(dim=-1).sum(0))
            add(f"v.{i}", ctx.abs().sum(0))
        elif kind in ("q", "k"):
            add(f"{kind}.{i}", x.view(-1, nh, d).abs().sum(0))
        elif kind == "qkv":  # a fused projection: Q, K, V in that order
            add(f"q.{i}", x[:, :width].reshape(-1, nh, d).abs().sum(0))
            add(f"k.{i}", x[:, width : 2 * width].reshape(-1, nh, d).abs().sum(0))
        elif kind == "ffn":
            add(f"ffn.{i}", x.abs().sum(0))

    base = teacher.base_model
    hook(base.get_submodule(fam.emb_norm), "ln.emb")
    for i, layer in enumerate(layers):
        if fam.qkv:
            hook(layer.get_submodule(fam.qkv), f"qkv.{i}")
        else:
            hook(layer.get_submodule(fam.query), f"q.{i}")
            hook(layer.get_submodule(fam.key), f"k.{i}")
        hook(layer.get_submodule(fam.attn_out), f"ctx.{i}", pre=True)
        hook(layer.get_submodule(fam.attn_norm), f"ln.a{i}")
        hook(layer.get_submodule(fam.ffn_act.lstrip("<")), f"ffn.{i}", pre=fam.ffn_act.startswith("<"))
        hook(layer.get_submodule(fam.out_norm), f"ln.o{i}")
    count = 0
    try:
        for batch in batches:
            mask_now["m"] = batch["attention_mask"]
            count += int(batch["attention_mask"].sum())
            forward(teacher, batch)
    finally:
        for h in hooks:
            h.remove()
    if not count:
        raise ConfigError("--student-init prune: no tokens to measure importance on")
    n = len(layers)
    return Importance(
        channels=sums["channels"] / count,
        heads=[sums[f"heads.{i}"] / count for i in range(n)],
        qk_dims=[sums[f"q.{i}"] * sums[f"k.{i}"] / count**2 for i in range(n)],
        v_dims=[sums[f"v.{i}"] / count for i in range(n)],
        neurons=[sums[f"ffn.{i}"] / count for i in range(n)],
    )


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores, in ascending index order (the teacher's order)."""
    if k > scores.numel():
        raise ConfigError(f"cannot keep {k} of {scores.numel()}")
    return scores.topk(k).indices.sort().values


def prune_student(teacher: nn.Module, shape, batches: list[dict[str, torch.Tensor]]) -> nn.Module:
    """A student of ``shape`` (a resolved ``StudentShape``: layers, hidden, heads, intermediate), of the
    teacher's family, whose every tensor is the teacher's at the kept channels, heads, dimensions and
    neurons of the uniformly mapped layers."""
    fam = family_of(teacher.config)
    if fam.name not in PRUNABLE:
        raise ConfigError(f"--student-init prune works for {', '.join(PRUNABLE)} teachers; this one is a {fam.name}")
    tc = teacher.config
    nh_t, d_t = tc.num_attention_heads, tc.hidden_size // tc.num_attention_heads
    nh_s, d_s = shape.heads, shape.hidden // shape.heads
    ffn_t = getattr(tc, fam.intermediate)
    if fam.rotary and d_s != d_t:
        raise ConfigError(f"--student-init prune: a {fam.name} teacher's heads are rotary (pairs of dimensions at "
                          f"fixed frequencies); keep whole heads of {d_t} (--student-heads {shape.hidden // d_t} for "
                          f"width {shape.hidden}), not heads of {d_s}")  # fmt: skip
    if shape.hidden > tc.hidden_size or nh_s > nh_t or d_s > d_t or shape.intermediate > ffn_t:
        raise ConfigError(
            f"--student-init prune: a {shape} student with {nh_s} heads of {d_s} and FFN {shape.intermediate} "
            f"is not inside the teacher ({tc.hidden_size} wide, {nh_t} heads of {d_t}, FFN {ffn_t})"
        )
    if getattr(tc, "embedding_size", None) not in (None, tc.hidden_size) and fam.name == "deberta-v2":
        raise ConfigError(
            f"--student-init prune: a deberta-v2 teacher with embeddings of {tc.embedding_size} "
            f"projected to {tc.hidden_size} is not supported (embedding_size must equal hidden_size)"
        )
    mapping = uniform_layer_map(shape.layers, tc.num_hidden_layers)
    imp = importance(teacher, batches)
    channels = _top(imp.channels, shape.hidden)
    shared = _top(sum(imp.heads[t] / imp.heads[t].mean().clamp_min(1e-12) for t in mapping), nh_s)
    qk_idx, v_idx, neurons = {}, {}, {}
    for t in mapping:
        heads = shared if fam.shared_heads else _top(imp.heads[t], nh_s)
        qk_idx[t] = torch.cat([h * d_t + _top(imp.qk_dims[t][h], d_s) for h in heads])
        v_idx[t] = torch.cat([h * d_t + _top(imp.v_dims[t][h], d_s) for h in heads])
        neurons[t] = _top(imp.neurons[t], shape.intermediate)
    student = type(teacher)(softmax_config(tc, shape.layers, shape.hidden, nh_s, shape.intermediate))
    t_state = teacher.state_dict()
    to_bert = fam.bert_names
    new_state = {}
    for key, want in student.state_dict().items():
        name = key
        for pattern, repl in to_bert:
            name = re.sub(pattern, repl, name)
        m = re.search(r"\.layers?\.(\d+)\.", key)
        src = key[: m.start(1)] + str(mapping[int(m.group(1))]) + key[m.end(1) :] if m else key
        w = t_state[src]
        t = mapping[int(m.group(1))] if m else None
        if fam.shared_heads and key.endswith(f"{fam.shared_heads}.weight"):
            w = w.index_select(1, shared)  # (buckets, heads): the heads every student layer keeps
        sets = (channels, qk_idx.get(t), v_idx.get(t), neurons.get(t), w)
        for axis, idx in enumerate(_indices(name, *sets) if to_bert else _fused_indices(key, tc, ffn_t, *sets)):
            if idx is not None:
                w = w.index_select(axis, idx)
        if w.shape != want.shape:
            raise ConfigError(f"pruning {src}: got {tuple(w.shape)}, the student's {key} needs {tuple(want.shape)}")
        new_state[key] = w.clone()
    student.load_state_dict(new_state)
    student.retort_copied = {
        "copied": len(new_state),
        "pruned_from_teacher": {
            "layers": [t + 1 for t in mapping],
            "hidden": f"{shape.hidden} of {tc.hidden_size}",
            "heads": f"{nh_s} of {nh_t} (head width {d_s} of {d_t})"
            + (
                f", the same {shared.tolist()} in every layer (one shared {fam.shared_heads})"
                if fam.shared_heads
                else ""
            ),  # fmt: skip
            "intermediate": f"{shape.intermediate} of {ffn_t}",
        },
        "own": 0,
    }
    return student


def _indices(name: str, ch, qk, v, neurons, w: torch.Tensor) -> tuple:
    """Which index set each axis of the tensor called ``name`` (BERT's names) keeps; None: all."""
    vector = w.dim() == 1
    if "_embeddings.weight" in name:
        return (None, ch)
    if "LayerNorm." in name:
        return (ch,)
    if re.search(r"attention\.self\.(query|key|pos_query_proj|pos_key_proj)\.", name):  # DeBERTa's pos_*
        return (qk,) if vector else (qk, ch)
    if "attention.self.value." in name:
        return (v,) if vector else (v, ch)
    if "attention.output.dense." in name:
        return (ch,) if vector else (ch, v)
    if "intermediate.dense." in name:
        return (neurons,) if vector else (neurons, ch)
    if re.search(r"layer\.\d+\.output\.dense\.", name):
        return (ch,) if vector else (ch, neurons)
    if "pooler.dense." in name:
        return (ch,) if vector else (ch, ch)
    if name.startswith("classifier."):
        return (None,) if vector else (None, ch)
    return (None,) * w.dim()  # buffers (position ids) and anything width-free


def _fused_indices(key: str, tc, ffn: int, ch, qk, v, neurons, w: torch.Tensor) -> tuple:
    """As ``_indices`` for ModernBERT's own names: fused Q/K/V rows in three blocks of the teacher's width, the
    gated MLP's input and gate rows in two blocks of its FFN width."""
    vector = w.dim() == 1
    h = tc.hidden_size
    if key.endswith("tok_embeddings.weight"):
        return (None, ch)
    if "norm." in key:  # embeddings.norm, attn_norm, mlp_norm, final_norm, head.norm
        return (ch,)
    if "attn.Wqkv." in key:
        rows = torch.cat([qk, h + qk, 2 * h + v])
        return (rows,) if vector else (rows, ch)
    if "attn.Wo." in key:
        return (ch,) if vector else (ch, v)
    if "mlp.Wi." in key:
        rows = torch.cat([neurons, ffn + neurons])
        return (rows,) if vector else (rows, ch)
    if "mlp.Wo." in key:
        return (ch,) if vector else (ch, neurons)
    if "head.dense." in key:
        return (ch,) if vector else (ch, ch)
    if key.startswith("classifier."):
        return (None,) if vector else (None, ch)
    return (None,) * w.dim()
