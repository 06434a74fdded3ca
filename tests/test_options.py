"""Typed options (warpbench.options): a misspelt key in a method preset, a suite or a dataset block
fails with one line naming the file, the block and the key, and the known keys; the JSON Schema
of datasets.yaml validates the shipped file; stored results keep their keys."""

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from toy_plugins import TOY_CONFIG, ToyPlugin
from warpbench import Method
from warpbench.config import ConfigError, build_dataset, datasets_yaml_schema, load_config
from warpbench.datasets import DatasetConfigError
from warpbench.options import OptionsError
from warpbench.plugins import load_registry
from warpbench.scheduler import config_key
from warpbench.training import training_key
from warpbench_classical import GreedyMethod

REPO = Path(__file__).resolve().parents[1]
GREEDY_KEYS = ("affine_init, check_every, gradient_sigma, iterations, learning_rate, lncc_window, "
               "loss, scales, tolerance, warp_sigma")


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def config_with(tmp_path, text: str):
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    return load_config(path), path


def built(tmp_path, registry, block: str):
    config, path = config_with(tmp_path, f"datasets:\n  {block}\n")
    name = next(iter(config.datasets))
    with pytest.raises(DatasetConfigError) as error:
        build_dataset(config, name, registry.dataset_kinds)
    return one_line(error), path


# --- a misspelt key, per kind of block ---------------------------------------------------------
def test_a_misspelt_key_in_a_preset_is_refused_at_registration_naming_method_and_preset():
    class Misspelt(GreedyMethod):
        name = "greedy-misspelt"
        presets = {**GreedyMethod.presets,
                   "fast": {**GreedyMethod.presets["fast"], "lncc_windw": 3}}

    class Plugin:
        from warpbench.hookspecs import hookimpl

        @hookimpl
        def register_methods(self, register):
            register(Misspelt())

    registry = load_registry(extra_plugins=[Plugin()])
    assert "greedy-misspelt" not in registry.methods
    (problem,) = [str(p) for p in registry.problems if "greedy-misspelt" in str(p)]
    assert problem.endswith("method 'greedy-misspelt' preset 'fast': unknown parameter "
                            f"'lncc_windw'; known: {GREEDY_KEYS}")
    assert "\n" not in problem
    with pytest.raises(OptionsError) as error:
        Misspelt().resolve(Misspelt.presets["fast"])
    assert one_line(error) == ("method 'greedy-misspelt' preset 'fast': unknown parameter "
                               f"'lncc_windw'; known: {GREEDY_KEYS}")


def test_a_misspelt_key_in_a_suite_names_the_file_the_suite_and_the_known_keys(tmp_path):
    path = tmp_path / "datasets.yaml"
    path.write_text("suites:\n  quick: {method: [identity], methods: [identity], datasets: []}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert one_line(error) == (f"{path}: suite 'quick': unknown key 'method'; known: datasets, "
                               "description, methods, seed, time_limit, train_on")


def test_a_misspelt_key_at_the_top_of_the_file_names_the_known_ones(tmp_path):
    path = tmp_path / "datasets.yaml"
    path.write_text("datasets: {}\nsuite: {}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert one_line(error) == f"{path}: unknown top-level key 'suite'; known: datasets, suites"


def test_a_misspelt_key_in_a_synthetic_block_names_file_block_kind_and_known_options(
        tmp_path, registry):
    message, path = built(tmp_path, registry, "synth-a: {plugin: synthetic, noize: 0.1}")
    known = ("bias, blur, cache_dir, citation, contrast, description, domain, download, "
             "intensity, label_map, license, noise, pairs, pre_aligned, seed, shape, spacing, "
             "split, subjects")
    assert message == (f"{path}: dataset 'synth-a' (synthetic): unknown option 'noize'; "
                       f"known: {known}")


def test_a_misspelt_key_in_a_decathlon_block_names_file_block_kind_and_known_options(
        tmp_path, registry):
    message, path = built(tmp_path, registry,
                          "hip: {plugin: decathlon, root: data, gird: [8, 8, 8]}")
    known = ("citation, description, domain, download, grid, label_map, labels, license, limit, "
             "pairs, pre_aligned, root, split")
    assert message == (f"{path}: dataset 'hip' (decathlon): unknown option 'gird'; "
                       f"known: {known}")


@pytest.mark.parametrize("option, known", [
    ("split: {trian: 2, test: 3}", "seed, test, train, val"),
    ("pairs: {tset: 4}", "seed, test, train, val"),
])
def test_a_misspelt_key_in_the_shared_split_and_pairs_names_the_field(tmp_path, registry,
                                                                        option, known):
    message, path = built(tmp_path, registry, f"synth-a: {{plugin: synthetic, {option}}}")
    field = f"{option.split(':')[0]}.{option.split('{')[1].split(':')[0]}"
    assert message == (f"{path}: dataset 'synth-a' (synthetic): unknown option {field!r}; "
                       f"known: {known}")


def test_a_kind_without_its_own_options_model_keeps_its_keys_and_the_shared_ones_are_checked(
        tmp_path):
    registry = load_registry(extra_plugins=[ToyPlugin()])  # toy declares no options model
    block = "toy-a: {plugin: toy, subjects: 4, split: {trian: 2}}"
    message, path = built(tmp_path, registry, block)
    assert message == (f"{path}: dataset 'toy-a' (toy): unknown option 'split.trian'; "
                       "known: seed, test, train, val")
    config, _ = config_with(tmp_path, "datasets:\n  toy-a: {plugin: toy, subjects: 4}\n")
    assert build_dataset(config, "toy-a", registry.dataset_kinds).count == 4


@pytest.mark.parametrize("block, said", [
    ("synth-a: {plugin: synthetic, split: {train: -1}}",
     "option 'split.train': must be a non-negative number (a fraction or a count), got -1"),
    ("synth-a: {plugin: synthetic, pairs: {test: many}}",
     "option 'pairs.test': must be a count or 'all', got 'many'"),
    ("synth-a: {plugin: synthetic, shape: [48, 56]}",
     "option 'shape': must be 3 integers >= 24, got [48, 56]"),
    ("synth-a: {plugin: synthetic, intensity: vivid}",
     "option 'intensity': must be 'distinct' or 'grouped', got 'vivid'"),
    ("synth-a: {plugin: decathlon}",
     "missing option 'root' (The folder holding imagesTr/ and labelsTr/, relative to the "
     "folder of datasets.yaml)"),
])
def test_a_bad_value_names_the_field_and_what_it_must_be(tmp_path, registry, block, said):
    message, path = built(tmp_path, registry, block)
    kind = "decathlon" if "decathlon" in block else "synthetic"
    assert message == f"{path}: dataset 'synth-a' ({kind}): {said}"


# --- presets -----------------------------------------------------------------------------------
def test_every_preset_of_every_builtin_method_validates(registry):
    assert not registry.problems, registry.problems
    for method in registry.methods.values():
        assert method.check() == [], method.name
        for preset in method.presets:
            method.resolve(method.presets[preset])


def test_a_resolved_preset_is_typed_and_the_stored_preset_stays_the_plain_dict():
    method = GreedyMethod()
    settings = method.resolve(method.presets["fast"])
    assert settings.lncc_window == 5 and settings.iterations == [100, 50, 15]
    assert method.resolve({"lncc_window": [7, 5, 3]}).lncc_window == [7, 5, 3]
    assert isinstance(method.presets["fast"], dict) and "lncc_window" in method.presets["fast"]


def test_a_per_scale_list_must_name_one_value_per_scale():
    with pytest.raises(OptionsError) as error:
        GreedyMethod().resolve({"iterations": [10, 5]})
    assert one_line(error) == "method 'greedy': iterations has 2 values for 3 scales"
    assert GreedyMethod().resolve({"iterations": 7}).iterations == 7  # a scalar: every scale


class Translation(Method):
    """The README's example plugin: no ``Params`` model, ``params`` read as a dict."""

    name = "translation"
    presets = {"default": {"steps": 100, "learning_rate": 0.2}, "long": {"steps": 400}}


def test_a_method_without_a_params_model_resolves_to_its_preset_dict():
    method = Translation()
    assert method.check() == []
    assert method.resolve(method.presets["long"]) == {"steps": 400, "learning_rate": 0.2}
    with pytest.raises(OptionsError) as error:
        method.resolve({"learning_rat": 1.0})
    assert one_line(error) == ("method 'translation': unknown parameter 'learning_rat'; "
                               "known: learning_rate, steps")


# --- the JSON Schema ---------------------------------------------------------------------------
def as_json(path: Path):
    """The YAML file as an editor's language server sees it: JSON data (keys are strings)."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text())))


def test_the_schema_of_the_builtin_kinds_validates_the_shipped_datasets_yaml(registry):
    schema = datasets_yaml_schema(registry.dataset_kinds)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert [e.message for e in validator.iter_errors(as_json(REPO / "datasets.yaml"))] == []
    synthetic = schema["$defs"]["SyntheticDatasetBlock"]["properties"]
    assert "noise" in synthetic and synthetic["noise"]["description"]  # what an editor shows


@pytest.mark.parametrize("where, key", [
    (("datasets", "synth-distinct"), "noize"),
    (("datasets", "hippocampus"), "gird"),
    (("datasets", "quick-grouped", "split"), "trian"),
    (("suites", "quick"), "method"),
])
def test_the_schema_rejects_a_misspelt_key(registry, where, key):
    data = as_json(REPO / "datasets.yaml")
    block = data
    for name in where:
        block = block[name]
    block[key] = 1
    errors = list(Draft202012Validator(datasets_yaml_schema(registry.dataset_kinds))
                  .iter_errors(data))
    assert errors and key in " ".join(str(e) for e in errors)


def test_the_schema_names_every_installed_kind_and_lets_an_open_kind_keep_its_keys():
    registry = load_registry(extra_plugins=[ToyPlugin()])
    schema = datasets_yaml_schema(registry.dataset_kinds)
    data = json.loads(json.dumps(yaml.safe_load(TOY_CONFIG)))
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(data)]
    # toy-a and toy-b validate (toy declares no options model, so its `subjects` is its own);
    # `missing` names a kind no plugin installed.
    assert len(errors) == 1 and "not-installed" in errors[0]


# --- stored results keep resuming --------------------------------------------------------------
def test_fingerprints_and_keys_are_those_of_the_code_before_typed_options(tmp_path, registry):
    """The values below were computed by the code that parsed options by hand; results stored
    under benchmarks/measured/ are keyed by them."""
    config, _ = config_with(tmp_path, """
datasets:
  quick-grouped:
    plugin: synthetic
    description: small grid for CI; labels share their tissue class's intensity, with a bias field
    shape: [32, 40, 32]
    intensity: grouped
    bias: 0.2
    noise: 0.03
    subjects: 8
    split: {train: 2, val: 0, test: 6, seed: 0}
    pairs: {test: 6, seed: 0}
""")
    dataset = build_dataset(config, "quick-grouped", registry.dataset_kinds)
    assert dataset.fingerprint() == "2d43d7040e8ed871"
    assert dataset.content_hash() == "9820c9ac762d7cdc"  # its cached subjects are found again
    greedy, voxelmorph = registry.methods["greedy"], registry.methods["voxelmorph"]
    # greedy's version 2 (issue 15: lengths in mm, an affine start unless pre-aligned) changed
    # its presets and version on purpose: its version-1 runs (f67d12c9e6eff78086fc2193) are not
    # resumed.
    assert config_key(greedy, "fast", dataset, 0, None) == "441967270019abd6c511837f"
    # VoxelMorph's version 2 (issue 16's recipe) changed its presets and version on purpose: its
    # trainings under version 1 (f8aae8d180b1806264e0f51f) are not reused.
    assert training_key(voxelmorph, "io", dataset, 0) == "0e3777488f2ec5887b775b77"
