import dataclasses

import pytest

from retort.config import TrainConfig, apply_overrides, from_dict, to_dict
from retort.errors import ConfigError


def test_roundtrip_and_overrides():
    data = apply_overrides(to_dict(TrainConfig()), ["objective.temperature=4", "epochs=2", "max_train_samples=10"])
    cfg = from_dict(TrainConfig, data)
    assert cfg.objective.temperature == 4.0 and cfg.epochs == 2 and cfg.max_train_samples == 10
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def test_unknown_keys_and_bad_types_raise():
    with pytest.raises(ConfigError, match="unknown key.*epoch"):
        from_dict(TrainConfig, {"epoch": 3})
    with pytest.raises(ConfigError, match="objective: unknown key.*temp"):
        from_dict(TrainConfig, {"objective": {"temp": 3}})
    with pytest.raises(ConfigError, match="expected int"):
        from_dict(TrainConfig, {"epochs": "many"})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["epochs"])


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"kind": "student"}, "kind 'student': expected teacher or distill"),
        ({"kind": "distill"}, "distillation needs --teacher DIR"),
        ({"kind": "distill", "teacher": "t", "general": True}, "--general needs --corpus PATH"),
        ({"kind": "distill", "teacher": "t", "general": True, "corpus": "c", "dse": True}, "--general is for"),
        (
            {"kind": "distill", "teacher": "t", "general": True, "corpus": "c", "objective": {"stage": "prediction"}},
            "--stage prediction has none",
        ),  # fmt: skip
        (
            {"kind": "distill", "teacher": "t", "task": "MRPC", "val_split": 0.1, "transfer": ["mrpc:100"]},
            "--val-split with --transfer mrpc:100: the task's own rows",
        ),
        ({"transfer": ["MRPC"]}, "retort distill only"),
        ({"kind": "distill", "teacher": "t", "dse": True, "transfer": ["MRPC"]}, "retort distill only"),
        ({"long_sts_tokens": 600}, "long_sts_tokens works with 'retort distill --task STS-B' only"),
        ({"dse": True, "task": "MRPC"}, "DSE distils a cross-encoder on a sentence-pair task; MRPC is not one"),
        ({"epochs": 3, "schedule_epochs": 2}, "must be at least epochs"),
    ],
)
def test_cross_field_rules_are_the_configs_own(fields, message):
    """A config made in Python (the API), from YAML or from flags is refused with the one line the
    command line gives, before any data or model is read."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        from_dict(TrainConfig, fields)
    assert "\n" not in str(caught.value)
    if "objective" not in fields:
        with pytest.raises(ConfigError):
            TrainConfig(**fields)


def test_valid_configs_stay_valid_through_replace():
    """What assembly does to a config (dataclasses.replace) keeps it valid."""
    cfg = TrainConfig(kind="distill", teacher="t", general=True, corpus="c")
    cfg = dataclasses.replace(
        cfg, cache_teacher="none", objective=dataclasses.replace(cfg.objective, stage="intermediate")
    )
    assert cfg.objective.stage == "intermediate"
    assert TrainConfig(kind="distill", teacher="t", dse=True, task="MRPC").dse
