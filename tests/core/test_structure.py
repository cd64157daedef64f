"""Strict structuring of YAML into attrs configs: nothing is coerced, every error is located."""

from __future__ import annotations

import textwrap
from typing import Literal

import attrs
import pytest

from w2v.config import ComponentSpec, check, component, field, real, size
from w2v.config.source import parse_yaml
from w2v.config.structure import structure, structure_component, unstructure
from w2v.errors import ConfigError, UserError


@attrs.define(kw_only=True)
class Inner:
    width: int = size(4, 1, 64, "inner width")


@attrs.define(kw_only=True)
class Example:
    layers: int = size(2, 1, 1024, "blocks")
    lr: float = real(1e-3, 0.0, 1.0, "learning rate")
    enabled: bool = field(True, "switch")
    mode: Literal["hard", "soft"] = field("hard", "straight-through or soft")
    temp: tuple[float, float, float] = field((2.0, 0.5, 0.9), "(max, min, decay)")
    names: list[str] = field([], "labels")
    inner: Inner = field(factory=Inner, help="a nested attrs section")
    label: str | None = field(None, "optional text")

    def __attrs_post_init__(self):
        check(self.temp[0] >= self.temp[1], "temp", "max temperature must be >= min temperature.")


@attrs.define(kw_only=True)
class Required:
    dim: int = size(help="width (required)")
    note: str = field("", "free text")


def parse(text: str, file: str = "recipe.yaml"):
    return parse_yaml(textwrap.dedent(text), file)


def structure_text(text: str, cls=Example, path=("section",)):
    """Structure the mapping under the top-level ``section:`` key of ``text``."""
    data, srcmap = parse(text)
    return structure(data["section"], cls, srcmap=srcmap, path=path)


def error_of(text: str, cls=Example, path=("section",)) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        structure_text(text, cls, path)
    return info.value


# ------------------------------------------------------------------ scalars
def test_valid_section_structures_with_types_preserved():
    cfg = structure_text("""\
        section:
          layers: 3
          lr: 0.5
          enabled: false
          mode: soft
          temp: [3, 1.5, 0.5]
          names: [a, b]
          inner: {width: 9}
        """)
    assert cfg.layers == 3 and type(cfg.layers) is int
    assert cfg.lr == 0.5 and cfg.enabled is False and cfg.mode == "soft"
    assert cfg.temp == (3.0, 1.5, 0.5) and all(type(t) is float for t in cfg.temp)
    assert cfg.names == ["a", "b"] and cfg.inner == Inner(width=9)


def test_float_refused_for_int_with_location():
    err = error_of("""\
        section:
          mode: hard
          layers: 2.7
        """)
    assert err.where == "recipe.yaml:3"
    assert err.key == "section.layers"
    assert "integer" in err.message and "2.7" in err.message


def test_true_refused_for_int():
    err = error_of("section:\n  layers: true\n")
    assert err.key == "section.layers" and "integer" in err.message and "true" in err.message


def test_string_no_refused_for_bool():
    # YAML 1.1 would read `no` as false; quoted it is the string "no" and must not become a bool.
    err = error_of('section:\n  enabled: "no"\n')
    assert err.key == "section.enabled"
    assert "true or false" in err.message and "'no'" in err.message


def test_integer_refused_for_bool():
    err = error_of("section:\n  enabled: 1\n")
    assert err.key == "section.enabled" and "true or false" in err.message


def test_number_refused_for_string():
    err = error_of("section:\n  label: 12\n")
    assert err.key == "section.label"
    assert "string" in err.message


def test_3e_minus_5_accepted_for_float_from_the_loader():
    data, _ = parse("section:\n  lr: 3e-5\n")
    assert isinstance(data["section"]["lr"], float)  # the loader resolves YAML-1.2 floats
    assert structure_text("section:\n  lr: 3e-5\n").lr == pytest.approx(3e-5)


def test_3e_minus_5_string_accepted_for_float():
    # plain PyYAML (and Python callers) hand over "3e-5" as a string
    cfg = structure({"lr": "3e-5"}, Example)
    assert cfg.lr == pytest.approx(3e-5) and type(cfg.lr) is float


def test_non_numeric_string_refused_for_float():
    err = error_of("section:\n  lr: fast\n")
    assert err.key == "section.lr" and "number" in err.message


def test_int_accepted_for_float():
    cfg = structure_text("section:\n  lr: 1\n")
    assert cfg.lr == 1.0 and type(cfg.lr) is float


def test_null_refused_for_non_optional():
    err = error_of("section:\n  layers: null\n")
    assert err.key == "section.layers" and "null" in err.message


def test_null_accepted_for_optional():
    assert structure_text("section:\n  label: null\n").label is None


# ------------------------------------------------------------------ choices and keys
def test_literal_invalid_choice_suggests_nearest():
    err = error_of("section:\n  mode: hrad\n")
    assert err.key == "section.mode" and err.where == "recipe.yaml:2"
    assert "Did you mean `hard`?" in err.render()
    assert "`soft`" in err.render()


def test_literal_with_wrong_type_lists_choices():
    err = error_of("section:\n  mode: 3\n")
    assert "'hard'" in err.render() and "'soft'" in err.render()


def test_unknown_key_suggests_nearest_key():
    err = error_of("""\
        section:
          layers: 2
          layres: 3
        """)
    assert err.key == "section.layres" and err.where == "recipe.yaml:3"
    assert "unknown key" in err.message
    assert "Did you mean `layers`?" in err.render()


def test_unknown_key_in_nested_attrs_section():
    err = error_of("section:\n  inner:\n    widht: 3\n")
    assert err.key == "section.inner.widht" and err.where == "recipe.yaml:3"
    assert "Did you mean `width`?" in err.render()


def test_missing_required_key_names_it_and_its_help():
    err = error_of("section:\n  note: hi\n", cls=Required)
    assert err.key == "section.dim"
    assert "missing" in err.message
    assert "width (required)" in err.render()
    assert err.where == "recipe.yaml:1"  # the section's own line: the key is nowhere in the file


# ------------------------------------------------------------------ bounds, tuples, lists
def test_huge_size_is_a_config_error_not_an_allocation():
    err = error_of("section:\n  layers: 1000000\n")
    assert err.key == "section.layers" and err.where == "recipe.yaml:2"
    assert "1000000" in err.message and "1024" in err.message


def test_below_lower_bound():
    err = error_of("section:\n  layers: 0\n")
    assert err.key == "section.layers" and "between 1 and 1024" in err.message


def test_float_bounds():
    err = error_of("section:\n  lr: 2.5\n")
    assert err.key == "section.lr" and "2.5" in err.message


def test_tuple_of_wrong_length():
    err = error_of("section:\n  temp: [2.0, 0.5]\n")
    assert err.key == "section.temp" and "3 items" in err.message and "found 2" in err.message


def test_tuple_item_of_wrong_type_names_the_index():
    err = error_of("section:\n  temp: [2.0, warm, 0.5]\n")
    assert err.key == "section.temp.1" and "number" in err.message


def test_scalar_refused_for_list():
    err = error_of("section:\n  names: abc\n")
    assert err.key == "section.names" and "list" in err.message


def test_list_item_of_wrong_type():
    err = error_of("section:\n  names: [a, 3]\n")
    assert err.key == "section.names.1" and "string" in err.message


def test_scalar_refused_for_nested_section():
    err = error_of("section:\n  inner: 5\n")
    assert err.key == "section.inner" and "mapping" in err.message


# ------------------------------------------------------------------ cross-field checks
def test_cross_field_check_reported_at_its_key():
    err = error_of("""\
        section:
          layers: 2
          temp: [0.1, 0.5, 0.9]
        """)
    assert err.key == "section.temp" and err.where == "recipe.yaml:3"
    assert "max temperature" in err.message


def test_cross_field_check_of_the_data_section():
    from w2v.data.config import DataConfig

    data, srcmap = parse("""\
        data:
          max_sample_size: 1000
          min_sample_size: 2000
        """)
    with pytest.raises(ConfigError) as info:
        structure(data["data"], DataConfig, srcmap=srcmap, path=("data",))
    assert info.value.key == "data.min_sample_size" and info.value.where == "recipe.yaml:3"


def test_errors_are_user_errors_with_exit_code_2():
    err = error_of("section:\n  layers: 2.7\n")
    assert isinstance(err, UserError) and err.exit_code == 2
    text = err.render()
    assert text.startswith("recipe.yaml:2: `section.layers`: ")


# ------------------------------------------------------------------ component references
NESTED = """\
    model:
      quantizer:
        name: toy_quantizer
        groups: 2
        inner:
          name: toy_aggregator
          layers: 1
          block:
            name: toy_scale
            factor: 0.5
    """


def structure_quantizer(text: str) -> ComponentSpec:
    data, srcmap = parse(text)
    return structure_component("quantizer", data["model"]["quantizer"], srcmap=srcmap,
                               path=("model", "quantizer"))


def quantizer_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        structure_quantizer(text)
    return info.value


def test_nested_component_references_three_deep(toy_plugins):
    spec = structure_quantizer(NESTED)
    assert spec.name == "toy_quantizer" and spec.key == "model.quantizer"
    inner = spec.config.inner
    assert isinstance(inner, ComponentSpec) and inner.name == "toy_aggregator"
    assert inner.key == "model.quantizer.inner" and inner.where == "recipe.yaml:5"
    block = inner.config.block
    assert block.kind == "toy_norm" and block.name == "toy_scale" and block.config.factor == 0.5
    assert unstructure(spec)["inner"]["block"] == {"name": "toy_scale", "factor": 0.5,
                                                   "mode": "mul"}


def test_nested_component_builds_through_the_registry(toy_plugins):
    from w2v.interfaces import Signal

    spec = structure_quantizer(NESTED)
    aggregator = spec.config.inner.build(Signal(kind="frames", dim=6))
    assert aggregator.block is not None and aggregator.block.scale.shape == (6,)


def test_unknown_name_at_depth_three(toy_plugins):
    err = quantizer_error(NESTED.replace("name: toy_scale", "name: toy_scal"))
    assert err.key == "model.quantizer.inner.block.name" and err.where == "recipe.yaml:9"
    assert "Did you mean `toy_scale`?" in err.render()
    assert "from toy" in err.render()  # which plugin provides each name


def test_unknown_key_at_depth_three(toy_plugins):
    err = quantizer_error(NESTED.replace("factor: 0.5", "factr: 0.5"))
    assert err.key == "model.quantizer.inner.block.factr" and err.where == "recipe.yaml:10"
    assert "Did you mean `factor`?" in err.render()


def test_wrong_type_at_depth_three(toy_plugins):
    err = quantizer_error(NESTED.replace("factor: 0.5", "factor: big"))
    assert err.key == "model.quantizer.inner.block.factor" and err.where == "recipe.yaml:10"
    assert "number" in err.message


def test_missing_required_key_at_depth_three(toy_plugins):
    err = quantizer_error(NESTED.replace("factor: 0.5", "mode: div"))
    assert err.key == "model.quantizer.inner.block.factor" and err.where == "recipe.yaml:8"
    assert "missing" in err.message


def test_bounds_at_depth_two(toy_plugins):
    err = quantizer_error(NESTED.replace("layers: 1", "layers: 1000000"))
    assert err.key == "model.quantizer.inner.layers" and err.where == "recipe.yaml:7"
    assert "1000000" in err.message


def test_literal_at_depth_three(toy_plugins):
    err = quantizer_error(NESTED.replace("factor: 0.5", "factor: 0.5\n            mode: mull"))
    assert err.key == "model.quantizer.inner.block.mode"
    assert "Did you mean `mul`?" in err.render()


def test_component_section_without_name_lists_choices(toy_plugins):
    err = quantizer_error(NESTED.replace("name: toy_scale", "mode: div"))
    assert err.key == "model.quantizer.inner.block.name"
    assert "`toy_scale`" in err.render()


def test_component_name_must_be_a_string(toy_plugins):
    err = quantizer_error(NESTED.replace("name: toy_scale", "name: 7"))
    assert err.key == "model.quantizer.inner.block.name" and "name" in err.message


def test_cross_field_check_inside_a_component(toy_plugins):
    err = quantizer_error(NESTED.replace("groups: 2", "temp: [0.1, 1.0, 0.9]"))
    assert err.key == "model.quantizer.temp" and err.where == "recipe.yaml:4"
    assert "max temperature" in err.message


def test_component_given_as_bare_name_string(toy_plugins):
    spec = structure_component("aggregator", "toy_aggregator", path="model.aggregator")
    assert spec.name == "toy_aggregator" and spec.config.layers == 2


def test_component_default_mapping_is_structured(toy_plugins):
    @attrs.define(kw_only=True)
    class WithDefault:
        agg: ComponentSpec | None = component("aggregator", {"name": "toy_aggregator",
                                                             "layers": 3}, "default aggregator")

    cfg = structure({}, WithDefault)
    assert cfg.agg.name == "toy_aggregator" and cfg.agg.config.layers == 3


# ------------------------------------------------------------------ non-finite and huge numbers
def test_huge_integer_for_a_float_is_a_config_error():
    err = error_of("section:\n  lr: 1" + "0" * 400 + "\n")
    assert err.key == "section.lr"


def test_nan_refused_by_a_bounded_float():
    err = error_of("section:\n  lr: .nan\n")
    assert err.key == "section.lr"


def test_infinity_refused_by_a_bounded_float():
    err = error_of("section:\n  lr: .inf\n")
    assert err.key == "section.lr" and "inf" in err.message
