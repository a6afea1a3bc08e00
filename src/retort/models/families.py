"""One adaptor per model family, as data: where a family keeps its layers, its Q/K/V projections and
its position table, whether Q K^T / sqrt(d) is its real attention score, and how its tensors are named
in BERT's terms (for retort's BERT-shaped linear-attention student). Code elsewhere reads this table;
nothing is written per experiment.

Attention targets. Where the pre-softmax score of a head is Q K^T / sqrt(d) (``attention="scores"``:
BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT), the Q and K projections are captured with forward hooks
and the score is computed from them, which works with the fast ``sdpa`` backend. Where it is not
(``attention="probs"``): DeBERTa-v2/v3 adds disentangled content-position terms, MPNet a relative position
bias, ModernBERT rotates Q and K and masks local windows, the model's own attention probabilities are
read (``output_attentions``, which needs the ``eager`` backend: switched on when asked for), and the
objective compares distributions, never Q K^T.

A family is found from ``config.model_type``; an unknown one is a clear error naming those that work.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from retort.errors import ConfigError


@dataclass(frozen=True)
class Family:
    """How retort reads one family of Hugging Face encoders. Paths are relative to the base model
    (``model.base_model``, the encoder without its task head); ``{i}`` is a layer index."""

    name: str  # config.model_type
    layers: str  # the ModuleList of layers, e.g. "encoder.layer"
    query: str | None  # in a layer; None when the projection is fused (``qkv``)
    key: str | None
    value: str | None
    attention: str  # "scores": Q K^T / sqrt(d) is the true score | "probs": read the model's own probabilities
    qkv: str | None = None  # a fused (H -> 3H) projection, Q, K, V in that order (ModernBERT's Wqkv)
    positions: str | None = "embeddings.position_embeddings"  # absolute position table; None: none (rotary, relative)
    padded_positions: bool = False  # real positions start at pad_token_id + 1 (RoBERTa, XLM-R, MPNet)
    token_types: bool = True  # the model reads token_type_ids
    intermediate: str = "intermediate_size"  # config field of the FFN width
    # the family's tensor names in BERT's terms, (pattern, replacement) applied in order to names with the
    # classifier prefix; {} means the family cannot initialise the BERT-shaped linear student
    bert_names: tuple[tuple[str, str], ...] = ()
    head_act: str = "tanh"  # activation between the head's dense layer and the classifier
    sentence_transformers: bool = True  # the encoder can be written as a sentence-transformers folder
    kernel: str = "softmax"  # "linear": retort's linear-attention student (its layers can be teacher-forced)
    # where width pruning (models/prune.py) measures importance, in a layer: the attention's output projection
    # (its input is the heads' context), the LayerNorm after attention, the module whose output is the FFN's
    # activation, the LayerNorm after the FFN; "" where the family cannot be pruned
    attn_out: str = "attention.output.dense"
    attn_norm: str = "attention.output.LayerNorm"
    ffn_act: str = "intermediate"
    out_norm: str = "output.LayerNorm"
    shared_heads: str = ""  # a table in the base model whose columns are heads, shared by all layers (MPNet's)
    emb_norm: str = "embeddings.LayerNorm"  # the embeddings' LayerNorm, in the base model
    rotary: bool = False  # rotary positions: a head's dimensions come in rotated pairs (prune whole heads only)

    def layer_list(self, model: nn.Module) -> nn.ModuleList:
        """The model's encoder layers, in order."""
        return model.base_model.get_submodule(self.layers)

    def layer_prefix(self, model: nn.Module) -> str:
        """Parameter-name prefix of layer i's tensors (with ``{i}``), e.g. ``bert.encoder.layer.{i}.``."""
        base = model.base_model_prefix
        return f"{base}.{self.layers}.{{i}}." if base and hasattr(model, base) else f"{self.layers}.{{i}}."

    def position_table(self, model: nn.Module) -> nn.Embedding | None:
        """The learned position embeddings, or None for a family or model without a table."""
        if self.positions is None:
            return None
        try:
            return model.base_model.get_submodule(self.positions)
        except AttributeError:  # DeBERTa with position_biased_input off has no table
            return None

    def takes_token_types(self, config) -> bool:
        """Whether to pass ``token_type_ids``: only to a family that reads them and has more than one type
        (RoBERTa's single type is all zeros anyway; a BERT tokenizer's 1s would overflow it)."""
        return self.token_types and int(getattr(config, "type_vocab_size", 0) or 0) > 1


_BERT_LIKE = dict(layers="encoder.layer", query="attention.self.query", key="attention.self.key",
                  value="attention.self.value", attention="scores")  # fmt: skip

# RoBERTa-style heads (dense, activation, out_proj on the first token) are BERT's pooler and classifier
_DENSE_OUT_HEAD = ((r"^classifier\.dense\.", "bert.pooler.dense."), (r"^classifier\.out_proj\.", "classifier."))

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("bert", **_BERT_LIKE, bert_names=((r"^bert\.", "bert."),)),
        Family(
            "roberta",
            **_BERT_LIKE,
            padded_positions=True,
            bert_names=((r"^roberta\.", "bert."), *_DENSE_OUT_HEAD),
        ),
        Family(
            "xlm-roberta",
            **_BERT_LIKE,
            padded_positions=True,
            bert_names=((r"^roberta\.", "bert."), *_DENSE_OUT_HEAD),
        ),
        Family(
            "electra",
            **_BERT_LIKE,
            bert_names=((r"^electra\.", "bert."), *_DENSE_OUT_HEAD),
            head_act="gelu",
        ),
        Family(
            "distilbert",
            layers="transformer.layer",
            query="attention.q_lin",
            key="attention.k_lin",
            value="attention.v_lin",
            attention="scores",
            token_types=False,
            intermediate="hidden_dim",
            attn_out="attention.out_lin",
            attn_norm="sa_layer_norm",
            ffn_act="ffn.activation",
            out_norm="output_layer_norm",
            bert_names=(
                (r"^distilbert\.transformer\.layer\.", "bert.encoder.layer."),
                (r"^distilbert\.", "bert."),
                (r"\.attention\.q_lin\.", ".attention.self.query."),
                (r"\.attention\.k_lin\.", ".attention.self.key."),
                (r"\.attention\.v_lin\.", ".attention.self.value."),
                (r"\.attention\.out_lin\.", ".attention.output.dense."),
                (r"\.sa_layer_norm\.", ".attention.output.LayerNorm."),
                (r"\.ffn\.lin1\.", ".intermediate.dense."),
                (r"\.ffn\.lin2\.", ".output.dense."),
                (r"\.output_layer_norm\.", ".output.LayerNorm."),
                (r"^pre_classifier\.", "bert.pooler.dense."),
            ),
            head_act="relu",
        ),
        Family(
            "mpnet",
            layers="encoder.layer",
            query="attention.attn.q",
            key="attention.attn.k",
            value="attention.attn.v",
            attention="probs",  # scores carry a relative position bias
            padded_positions=True,
            token_types=False,
            attn_out="attention.attn.o",
            attn_norm="attention.LayerNorm",
            shared_heads="encoder.relative_attention_bias",  # (buckets, heads): one bias table for every layer
            bert_names=(
                (r"^mpnet\.", "bert."),
                (r"\.attention\.attn\.q\.", ".attention.self.query."),
                (r"\.attention\.attn\.k\.", ".attention.self.key."),
                (r"\.attention\.attn\.v\.", ".attention.self.value."),
                (r"\.attention\.attn\.o\.", ".attention.output.dense."),
                (r"\.attention\.LayerNorm\.", ".attention.output.LayerNorm."),
                *_DENSE_OUT_HEAD,
            ),
        ),
        Family(
            "deberta-v2",
            layers="encoder.layer",
            query="attention.self.query_proj",
            key="attention.self.key_proj",
            value="attention.self.value_proj",
            attention="probs",  # scores add content-to-position and position-to-content terms
            bert_names=(
                (r"^deberta\.", "bert."),
                (r"\.attention\.self\.query_proj\.", ".attention.self.query."),
                (r"\.attention\.self\.key_proj\.", ".attention.self.key."),
                (r"\.attention\.self\.value_proj\.", ".attention.self.value."),
                (r"^pooler\.dense\.", "bert.pooler.dense."),
            ),
            head_act="gelu",
        ),
        Family(
            "modernbert",
            layers="layers",
            query=None,
            key=None,
            value=None,
            qkv="attn.Wqkv",
            attention="probs",  # rotary positions and local attention windows
            positions=None,
            token_types=False,
            bert_names=(),  # pre-norm layers with a gated MLP and no biases: not BERT-shaped
            attn_out="attn.Wo",
            attn_norm="mlp_norm",  # pre-norm: the two LayerNorms of a layer see its residual stream
            ffn_act="<mlp.Wo",  # "<": the module's input (act(x Wi_in) * x Wi_gate, the gated neurons)
            out_norm="attn_norm",
            emb_norm="embeddings.norm",
            rotary=True,
        ),
        Family(  # retort's linear-attention student (linear.py): BERT's names, explicit attention maps
            "retort-linear-bert",
            **{**_BERT_LIKE, "attention": "probs"},
            bert_names=((r"^bert\.", "bert."),),
            sentence_transformers=False,
            kernel="linear",
        ),
    )
}


def family_of(config) -> Family:
    """The adaptor of a config (``config.model_type``)."""
    name = getattr(config, "model_type", None)
    if name not in FAMILIES:
        raise ConfigError(f"model family {name!r} is not supported; supported: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def usable_positions(config) -> int:
    """The tokens one input may hold: the position table less the rows before the first real position
    (RoBERTa's 514 rows hold 512). A family retort has no adaptor for keeps its whole table."""
    table = int(getattr(config, "max_position_embeddings", None) or 512)
    family = FAMILIES.get(getattr(config, "model_type", None))
    return table - ((config.pad_token_id or 0) + 1 if family is not None and family.padded_positions else 0)


def width(config) -> tuple[int, int, int, int]:
    """(layers, hidden, heads, FFN width) of any family's config."""
    fam = family_of(config)
    return (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, getattr(config, fam.intermediate))
