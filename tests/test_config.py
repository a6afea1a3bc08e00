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
