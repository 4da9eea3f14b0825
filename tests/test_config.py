"""Profiles load into a validated, frozen config; bad keys, types and values fail with one line naming the key."""

import dataclasses

import pytest

from dinoxfer_lib.config import available_profiles, config_hash, load_config
from dinoxfer_lib.errors import ConfigError


@pytest.mark.parametrize("profile", ["smoke", "demo", "paper"])
def test_every_shipped_profile_loads(profile):
    config = load_config(profile)
    assert config.profile == profile
    assert config.split.n_folds >= 2


def test_profiles_are_listed():
    assert {"smoke", "demo", "paper"} <= set(available_profiles())


def test_paper_profile_holds_the_papers_split():
    config = load_config("paper")
    assert config.split.test_fraction == 0.1 and config.split.n_folds == 5
    assert config.data.opencell.source == "opencell"


def test_demo_opencell_set_is_large_enough_for_five_fold_cv():
    assert load_config("demo").data.opencell.n_images >= 2000


def test_overrides_apply_nested_and_keep_siblings():
    config = load_config("smoke", {"data": {"opencell": {"n_images": 300}}, "seed": 3})
    assert config.data.opencell.n_images == 300
    assert config.data.opencell.image_size == load_config("smoke").data.opencell.image_size
    assert config.seed == 3


def test_config_is_frozen():
    config = load_config("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"split": {"n_fold": 5}}, "split.n_fold"),
        ({"nonsense": 1}, "nonsense"),
        ({"split": {"n_folds": 0}}, "split.n_folds"),
        ({"split": {"n_folds": "five"}}, "split.n_folds"),
        ({"split": {"n_folds": 2.5}}, "split.n_folds"),
        ({"split": {"test_fraction": 1.5}}, "split.test_fraction"),
        ({"split": {"group_by_protein": "yes"}}, "split.group_by_protein"),
        ({"data": {"opencell": {"n_images": -5}}}, "data.opencell.n_images"),
        ({"data": {"opencell": {"source": "imagenet"}}}, "data.opencell.source"),
        ({"data": {"hpa": {"source": "opencell", "path": "x"}}}, "data.hpa.source"),
        ({"data": {"opencell": {"source": "opencell"}}}, "data.opencell.path"),
        ({"seed": -1}, "seed"),
        ({"data": 3}, "data"),
        ({"embed": {"compile": "fast"}}, "embed.compile': expected true or false or one of 'default', 'max-autotune"),
    ],
)
def test_bad_values_name_the_key_in_one_line(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_config("smoke", overrides)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="smoke"):
        load_config("nope")


def test_profile_file_path(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("seed: 7\nsplit: {n_folds: 4}\n")
    config = load_config(str(path))
    assert config.profile == "lab" and config.seed == 7 and config.split.n_folds == 4


def test_invalid_yaml_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: [1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert "\n" not in str(info.value)


def test_hash_ignores_key_order_but_not_values():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert load_config("smoke").section_hash("split") != load_config("demo").section_hash("split")


def test_profiles_offer_exactly_the_compile_modes_the_extractor_takes():
    import typing

    from dinoxfer_lib.config import EmbedConfig
    from dinoxfer_lib.embed import COMPILE_MODES

    _, modes = typing.get_args(typing.get_type_hints(EmbedConfig)["compile"])
    assert typing.get_args(modes) == COMPILE_MODES
