"""The `data:` section: defaults, bounds, cross-field checks, strict structuring."""

import attrs
import pytest

from w2v.config.structure import structure
from w2v.data.config import DataConfig
from w2v.errors import ConfigError


def test_every_field_is_documented():
    for f in attrs.fields(DataConfig):
        assert f.metadata.get("help"), f.name


def test_defaults_match_fairseq_base_pretraining():
    cfg = DataConfig()
    assert (cfg.sample_rate, cfg.max_tokens, cfg.max_sample_size) == (16000, 1_400_000, 250_000)
    assert cfg.pad is False and cfg.bad_input == "fail" and cfg.labels is None


@pytest.mark.parametrize("kwargs, key", [
    ({"min_sample_size": 300_000}, "min_sample_size"),
    ({"max_tokens": 1000}, "max_tokens"),
    ({"dictionary": "dict.ltr.txt"}, "dictionary"),
    ({"num_workers": 1000}, "num_workers"),
])
def test_cross_field_and_bound_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        DataConfig(**kwargs)
    assert err.value.key == key


def test_structuring_names_the_full_key_path():
    cfg = structure({"train": "m/train.tsv", "labels": "ltr", "pad": True}, DataConfig)
    assert cfg.labels == "ltr" and cfg.pad is True
    with pytest.raises(ConfigError) as err:
        structure({"max_tokens": 10}, DataConfig, path=("data",))
    assert err.value.key == "data.max_tokens"
    with pytest.raises(ConfigError) as err:
        structure({"labels": "letters"}, DataConfig, path=("data",))
    assert err.value.key == "data.labels"
    with pytest.raises(ConfigError) as err:
        structure({"max_token": 10}, DataConfig, path=("data",))
    assert "max_tokens" in str(err.value)
