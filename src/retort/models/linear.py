"""Linear-attention BERT student, in one file: O(n) kernelised attention (Katharopoulos et al. 2020,
"Transformers are RNNs"), everything else BERT-compatible.

    softmax attention:  out_i = sum_j exp(q_i . k_j / sqrt(d)) v_j / sum_j exp(q_i . k_j / sqrt(d))   O(n^2)
    linear attention:   out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / phi(q_i)^T (sum_j phi(k_j))        O(n)

The key-value state ``sum_j phi(k_j) v_j^T`` (d_phi x d per head) and the normaliser ``sum_j phi(k_j)``
are accumulated in float32. Padded keys are removed by zeroing their features, so they add nothing to
either sum, for any mask (not only right-padding). Feature maps: ``elu`` (elu(x) + 1), ``relu``,
``favor`` (FAVOR+ positive orthogonal random features, Choromanski et al. 2021, whose kernel estimates
the softmax kernel exp(q . k / sqrt(d)); the random matrix is a buffer, frozen unless ``redraw`` is on
during training), and ``hedgehog`` (a learned map, Zhang et al. 2024, "The Hedgehog & the Porcupine"):
per head, phi(x) = [softmax(x W + b), softmax(-(x W + b))] over 2d features, W initialised to the
identity. Its weights are trained to make the linear map mimic the teacher's softmax attention (the
``attention`` stage of the objective trains them alone, everything else frozen) before the usual
distillation.

Parameter names follow Hugging Face's BERT (``bert.embeddings...``, ``bert.encoder.layer.N.attention.self.query``
...); a teacher of another family is mapped onto them by its adaptor (``families.py``, ``init.py``):
embeddings, attention projections, FFN, layer norms, pooler and classifier.
``linear_attention_reference`` is the slow quadratic form of the same
kernel, kept here for the tests. The config class (``LinearBertConfig``) lives in ``linear_configuration.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput

from retort.models.linear_configuration import MODEL_TYPE, LinearBertConfig
from retort.models.outputs import ModelOutput, Needs

# --------------------------------------------------------------------------------------------
# the math, as free functions


def elu_feature(x: torch.Tensor) -> torch.Tensor:
    """elu(x) + 1, elementwise: positive features of the same shape as ``x`` (B, nh, T, d)."""
    return F.elu(x) + 1.0


def relu_feature(x: torch.Tensor) -> torch.Tensor:
    """relu(x), elementwise: non-negative features of the same shape as ``x`` (B, nh, T, d)."""
    return F.relu(x)


def favor_feature(
    x: torch.Tensor, proj: torch.Tensor, is_query: bool, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """FAVOR+ positive random features. x (B, nh, T, d), proj (m, d) -> (B, nh, T, m).

    phi(x) = exp(w . x' - |x'|^2 / 2 - c) / sqrt(m) with x' = x / d^(1/4), so that
    E[phi(q) . phi(k)] = exp(q . k / sqrt(d)) * exp(-c_q - c_k). The stabiliser c is the max over
    features per row for queries and, for keys, the max over the real keys of each (example, head);
    both cancel in the attention normaliser, and padded keys (``mask`` 0) cannot move it.
    """
    d = x.shape[-1]
    x = x * d**-0.25
    wx = torch.einsum("bhtd,md->bhtm", x, proj.to(x.dtype))
    sq = x.pow(2).sum(-1, keepdim=True) / 2
    if is_query:
        stab = wx.amax(-1, keepdim=True)
    else:
        real = wx if mask is None else wx.masked_fill(mask[:, None, :, None] == 0, float("-inf"))
        stab = real.amax(dim=(-1, -2), keepdim=True).clamp_min(-1e4)  # (B, nh, 1, 1)
    return torch.exp(wx - sq - stab.detach()) / math.sqrt(proj.shape[0]) + 1e-6


def hedgehog_feature(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    act: str = "softmax",
    is_query: bool = True,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hedgehog's learned map. x (B, nh, T, d), weight (nh, d, m), bias (nh, m) -> (B, nh, T, 2m).

    ``softmax`` (LoLCATs' form): [softmax(z), softmax(-z)] over features, z = x W + b; every feature is
    positive and bounded (the normaliser is never 0) and every key carries the same total mass.
    ``exp`` (the Hedgehog paper's form): [exp(z), exp(-z)], so a key's features can grow and a key can be
    heavy for every query, as BERT's [CLS] and [SEP] are. Stabilised as FAVOR+ is: queries by their
    row maximum, keys by the maximum over the real keys of each (example, head); both cancel in the
    attention normaliser, and padded keys (``mask`` 0) cannot move it.
    """
    z = torch.einsum("bhtd,hdm->bhtm", x, weight.to(x.dtype)) + bias.to(x.dtype)[None, :, None, :]
    if act == "softmax":
        return torch.cat([torch.softmax(z, dim=-1), torch.softmax(-z, dim=-1)], dim=-1)
    if act != "exp":
        raise ValueError(f"hedgehog activation {act!r}: choose softmax or exp")
    zz = torch.cat([z, -z], dim=-1)
    if is_query:
        return torch.exp(zz - zz.amax(-1, keepdim=True).detach())
    if mask is not None:  # padded keys: features exactly 0, whatever their values
        zz = zz.masked_fill(mask[:, None, :, None] == 0, float("-inf"))
    stab = zz.amax(dim=(-1, -2), keepdim=True).clamp_min(-1e4)  # (B, nh, 1, 1)
    return torch.exp(zz - stab.detach())


class HedgehogFeatureMap(nn.Module):
    """The trainable part of a ``hedgehog`` layer: one d x d map per head (identity at the start), shared
    by queries and keys, or with ``separate`` a second one for the keys (``key_weight``, ``key_bias``)."""

    def __init__(self, heads: int, d: int, act: str = "softmax", separate: bool = False):
        super().__init__()
        if act not in ("softmax", "exp"):
            raise ValueError(f"hedgehog activation {act!r}: choose softmax or exp")
        self.act = act
        self.weight = nn.Parameter(torch.eye(d).repeat(heads, 1, 1))
        self.bias = nn.Parameter(torch.zeros(heads, d))
        if separate:
            self.key_weight = nn.Parameter(torch.eye(d).repeat(heads, 1, 1))
            self.key_bias = nn.Parameter(torch.zeros(heads, d))
        else:
            self.key_weight = self.key_bias = None

    def forward(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(phi(q), phi(k)), each (B, nh, T, 2d); ``mask`` (B, T) keeps padded keys out of the keys' stabiliser."""
        kw, kb = (self.key_weight, self.key_bias) if self.key_weight is not None else (self.weight, self.bias)
        return (
            hedgehog_feature(q, self.weight, self.bias, self.act, True),
            hedgehog_feature(k, kw, kb, self.act, False, mask),
        )


def orthogonal_gaussian(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(m, d) random features: blocks of orthogonal rows, each row rescaled to a chi(d) norm."""
    blocks = []
    for _ in range(math.ceil(m / d)):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator))
        blocks.append(q.T)
    w = torch.cat(blocks)[:m]
    norms = torch.randn(m, d, generator=generator).norm(dim=1, keepdim=True)
    return w * norms


def linear_attention(
    phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, eps: float = 1e-6
) -> torch.Tensor:
    """O(n) attention. phi_q, phi_k (B, nh, T, m); v (B, nh, T, d); mask (B, T), 1 = real token.

    Returns (B, nh, T, d). Sums run in float32 whatever the input dtype.
    """
    if mask is not None:
        phi_k = phi_k * mask[:, None, :, None].to(phi_k.dtype)  # padded keys contribute nothing
    phi_q32, phi_k32 = phi_q.float(), phi_k.float()
    kv = torch.einsum("bhtm,bhtd->bhmd", phi_k32, v.float())  # (B, nh, m, d)
    z = phi_k32.sum(dim=2)  # (B, nh, m)
    num = torch.einsum("bhtm,bhmd->bhtd", phi_q32, kv)
    den = torch.einsum("bhtm,bhm->bht", phi_q32, z).unsqueeze(-1)
    return (num / (den + eps)).to(v.dtype)


def linear_attention_map(
    phi_q: torch.Tensor, phi_k: torch.Tensor, mask: torch.Tensor | None, eps: float = 1e-6
) -> torch.Tensor:
    """The explicit normalised map phi(Q) phi(K)^T / Z, (B, nh, T, T); O(n^2), for distillation only."""
    a = torch.einsum("bhim,bhjm->bhij", phi_q.float(), phi_k.float())
    if mask is not None:
        a = a * mask[:, None, None, :].to(a.dtype)
    return a / (a.sum(-1, keepdim=True) + eps)


def linear_attention_reference(
    phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, eps: float = 1e-6
) -> torch.Tensor:
    """The same kernel computed the slow, quadratic way (tests compare the fast path with it)."""
    a = phi_q.float() @ phi_k.float().transpose(-1, -2)  # (B, nh, T, T)
    if mask is not None:
        a = a * mask[:, None, None, :].to(a.dtype)
    return ((a @ v.float()) / (a.sum(-1, keepdim=True) + eps)).to(v.dtype)


# --------------------------------------------------------------------------------------------
# modules (names as in transformers' BERT so that teacher weights load)


class Embeddings(nn.Module):
    """BERT's embeddings: word + position + token type, then LayerNorm and dropout."""

    def __init__(self, c: LinearBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """(B, T) token ids -> (B, T, H) embedding output; raises if T exceeds the position table."""
        t = input_ids.shape[1]
        if t > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"input of {t} tokens is longer than the {self.position_embeddings.num_embeddings} "
                "positions of this model (extend them with extend_positions)"
            )
        pos = torch.arange(t, device=input_ids.device)[None, :]
        one_type = token_type_ids is None or self.token_type_embeddings.num_embeddings == 1
        types = torch.zeros_like(input_ids) if one_type else token_type_ids
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos) + self.token_type_embeddings(types)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    """Projections as in BERT; the kernel is linear. Returns the attention output and, on request, its
    explicit normalised map (for the attention distillation term) and value vectors."""

    def __init__(self, c: LinearBertConfig):
        super().__init__()
        self.heads, self.d = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.kind, self.eps, self.redraw = c.feature_map, c.eps, c.redraw
        if c.feature_map == "favor":
            self.register_buffer("proj", orthogonal_gaussian(c.num_features, self.d))
        elif c.feature_map == "hedgehog":
            if c.hedgehog_qk not in ("shared", "separate"):
                raise ValueError(f"hedgehog_qk {c.hedgehog_qk!r}: choose shared or separate")
            # trainable: *.feature_map.*
            self.feature_map = HedgehogFeatureMap(self.heads, self.d, c.hedgehog_act, c.hedgehog_qk == "separate")
        elif c.feature_map not in ("elu", "relu"):
            raise ValueError(f"feature map {c.feature_map!r}: choose elu, relu, favor or hedgehog")

    def features(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(phi(q), phi(k)) under this layer's feature map; ``favor`` first redraws its features if asked."""
        if self.kind == "elu":
            return elu_feature(q), elu_feature(k)
        if self.kind == "relu":
            return relu_feature(q), relu_feature(k)
        if self.kind == "hedgehog":
            return self.feature_map(q, k, mask)
        if self.redraw and self.training:
            self.proj.copy_(orthogonal_gaussian(self.proj.shape[0], self.d).to(self.proj))
        return favor_feature(q, self.proj, True), favor_feature(k, self.proj, False, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, want_map: bool = False):
        """x (B, T, H) -> (output (B, T, H), attention map (B, nh, T, T) or None, values (B, T, H))."""
        b, t, h = x.shape
        split = lambda y: y.view(b, t, self.heads, self.d).transpose(1, 2)  # (B, nh, T, d)  # noqa: E731
        v_flat = self.value(x)
        q, k, v = split(self.query(x)), split(self.key(x)), split(v_flat)
        phi_q, phi_k = self.features(q, k, mask)
        out = linear_attention(phi_q, phi_k, v, mask, self.eps)  # (B, nh, T, d)
        attn_map = linear_attention_map(phi_q, phi_k, mask, self.eps) if want_map else None
        return out.transpose(1, 2).reshape(b, t, h), attn_map, v_flat


class DenseNorm(nn.Module):
    """BERT's ``...output``: dense, dropout, residual, LayerNorm."""

    def __init__(self, d_in: int, d_out: int, c: LinearBertConfig):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """LayerNorm(dropout(dense(x)) + residual)."""
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    """BERT's ``attention`` block: the linear self-attention and its output projection."""

    def __init__(self, c: LinearBertConfig):
        super().__init__()
        setattr(self, "self", SelfAttention(c))  # noqa: B010  (HF name: attention.self.query)
        self.output = DenseNorm(c.hidden_size, c.hidden_size, c)


class Intermediate(nn.Module):
    """BERT's ``intermediate``: the FFN's first dense layer (GELU is applied by ``Layer``)."""

    def __init__(self, c: LinearBertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)


class Layer(nn.Module):
    """One encoder layer: linear self-attention, then the feed-forward block, each with residual and norm."""

    def __init__(self, c: LinearBertConfig):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = DenseNorm(c.intermediate_size, c.hidden_size, c)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, want_map: bool):
        """x (B, T, H) -> (the layer's output (B, T, H), its attention map or None, its values (B, T, H))."""
        a, attn_map, values = self.attention.self(x, mask, want_map)
        x = self.attention.output(a, x)
        x = self.output(F.gelu(self.intermediate.dense(x)), x)
        return x, attn_map, values


class Encoder(nn.Module):
    """The stack of layers, as ``encoder.layer.N`` (run one by one by ``retort_forward``)."""

    def __init__(self, c: LinearBertConfig):
        super().__init__()
        self.layer = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])


class Pooler(nn.Module):
    """The dense layer over [CLS] (its activation is the config's ``head_act``)."""

    def __init__(self, c: LinearBertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)


class Bert(nn.Module):
    """The ``bert.`` prefix of the parameter names: embeddings, encoder, pooler."""

    def __init__(self, c: LinearBertConfig):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.pooler = Pooler(c)


class LinearBertPreTrainedModel(PreTrainedModel):
    """transformers' base for the linear student: its config class and weight initialisation (BERT's, plus
    an identity start for hedgehog maps and fresh random features for favor)."""

    config_class = LinearBertConfig
    base_model_prefix = "bert"

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # normal(0.02) linears and embeddings, unit LayerNorms
        if isinstance(module, HedgehogFeatureMap):  # identity start
            d = module.weight.shape[-1]
            for name in ("weight", "key_weight"):
                if getattr(module, name) is not None:
                    init.copy_(getattr(module, name), torch.eye(d).repeat(module.weight.shape[0], 1, 1))
            for name in ("bias", "key_bias"):
                if getattr(module, name) is not None:
                    init.zeros_(getattr(module, name))
        if isinstance(module, SelfAttention) and module.kind == "favor":
            init.copy_(module.proj, orthogonal_gaussian(module.proj.shape[0], module.d))


_HEAD_ACTS = {"tanh": torch.tanh, "gelu": F.gelu, "relu": F.relu}


class LinearBertForSequenceClassification(LinearBertPreTrainedModel):
    """A BERT-shaped sequence classifier with linear attention, a transformers model: ``from_pretrained``,
    ``save_pretrained`` and ``AutoModelForSequenceClassification`` work (after ``import retort``).
    ``forward`` returns transformers' output (its ``attentions`` are the explicit linear maps);
    ``retort_forward`` a ``ModelOutput``, and can teacher-force the layers."""

    def __init__(self, config: LinearBertConfig):
        super().__init__(config)
        if config.head_act not in _HEAD_ACTS:
            raise ValueError(f"head_act {config.head_act!r}: choose {', '.join(_HEAD_ACTS)}")
        self.bert = Bert(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def retort_forward(
        self,
        batch: dict[str, torch.Tensor],
        needs: Needs | None = None,
        layer_inputs: tuple[torch.Tensor, ...] | None = None,
    ) -> ModelOutput:
        """``layer_inputs`` (one (B, T, H) tensor per layer) teacher-forces the encoder: layer l reads
        ``layer_inputs[l]`` (a teacher hidden state, see ``Distillation.layer_inputs``) instead of layer
        l-1's output, so each layer's attention can be fit to the teacher's without earlier layers' errors."""
        needs = needs or Needs()
        mask = batch.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(batch["input_ids"])
        layers = self.bert.encoder.layer
        if layer_inputs is not None and len(layer_inputs) != len(layers):
            raise ValueError(f"teacher forcing: {len(layer_inputs)} layer inputs for {len(layers)} layers")
        x = self.bert.embeddings(batch["input_ids"], batch.get("token_type_ids"))
        hidden, maps, values = [x], [], []
        for i, layer in enumerate(layers):
            x, attn_map, v = layer(x if layer_inputs is None else layer_inputs[i], mask, needs.attention_scores)
            hidden.append(x)
            maps.append(attn_map)
            values.append(v)
        pooled = _HEAD_ACTS[self.config.head_act](self.bert.pooler.dense(x[:, 0]))
        logits = self.classifier(self.dropout(pooled))
        return ModelOutput(
            logits=logits,
            attention_mask=mask,
            hidden_states=tuple(hidden) if needs.hidden_states else None,
            attention_probs=tuple(maps) if needs.attention_scores else None,
            values=tuple(values) if needs.values else None,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **_,
    ) -> SequenceClassifierOutput:
        """transformers' interface: logits, and the loss when ``labels`` are given (MSE for regression,
        BCE for multi-label, cross-entropy otherwise); ``attentions`` are the explicit linear maps."""
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        needs = Needs(hidden_states=bool(output_hidden_states), attention_scores=bool(output_attentions))
        out = self.retort_forward({k: v for k, v in batch.items() if v is not None}, needs)
        loss = None
        if labels is not None:
            if self.config.problem_type == "regression":
                loss = F.mse_loss(out.logits.view(-1), labels.to(out.logits.dtype).view(-1))
            elif self.config.problem_type == "multi_label_classification":
                loss = F.binary_cross_entropy_with_logits(out.logits, labels.to(out.logits.dtype))
            else:
                loss = F.cross_entropy(out.logits, labels)
        return SequenceClassifierOutput(
            loss=loss, logits=out.logits, hidden_states=out.hidden_states, attentions=out.attention_probs
        )


def register_auto_classes() -> None:
    """Make ``AutoConfig`` and ``AutoModelForSequenceClassification`` know the linear student (called by
    ``import retort``; no ``trust_remote_code``)."""
    try:
        AutoConfig.register(MODEL_TYPE, LinearBertConfig)
        AutoModelForSequenceClassification.register(LinearBertConfig, LinearBertForSequenceClassification)
    except ValueError:  # already registered
        pass


register_auto_classes()  # whoever imports this file can load a saved student through the Auto classes
