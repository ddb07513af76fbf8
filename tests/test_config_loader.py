"""The config loader: every documented OVMS config shape loads; every broken config is reported with its position."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from ovmsd.config.loader import (
    ConfigError,
    ConfigIssue,
    check_config,
    check_config_bytes,
    check_config_text,
    config_format,
    load_config,
    parse_config_text,
    single_model_config,
)
from ovmsd.config.models import (
    BatchSize,
    Dim,
    InputShape,
    ServerConfig,
    ShapeConfig,
    VersionPolicy,
    parse_shape,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = "/model_config_list/0/config"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def one_model(*extra: str, name: str = "resnet") -> str:
    """A JSON config of one model, one key per line: name on line 4, base_path on line 5, ``extra`` from line 6.

    Each extra line starts at column 7, so a value written after ``"key": `` starts at column 7 + len('"key": ').
    """
    fields = [f'"name": "{name}"', '"base_path": "models/resnet"', *extra]
    body = ",\n".join("      " + f for f in fields)
    return '{\n  "model_config_list": [\n    {"config": {\n' + body + "\n    }}\n  ]\n}\n"


def issues_of(text: str, fmt: str = "json") -> list[ConfigIssue]:
    result = check_config_text(text, fmt=fmt, source=Path("/srv/config." + fmt))
    assert result.config is None, "expected the config to be rejected"
    return list(result.issues)


def only_issue(text: str, fmt: str = "json") -> ConfigIssue:
    issues = issues_of(text, fmt)
    assert len(issues) == 1, issues
    return issues[0]


# ---------------------------------------------------------------------------------------------------------------------
# Valid configs: the shapes the OVMS documentation shows


def test_single_model_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path, "config.json", '{"model_config_list": [{"config": {"name": "resnet", "base_path": "/m/r"}}]}'
    )
    config = load_config(path)
    assert config.source == path
    assert config.warnings == ()
    (model,) = config.models
    assert model.name == "resnet"
    assert model.base_path == Path("/m/r")
    assert model.batch_size is None
    assert model.shape == ShapeConfig()
    assert model.layout is None
    assert model.version_policy == VersionPolicy(kind="latest", num_versions=1)
    assert model.nireq == 0
    assert model.target_device == "CPU"
    assert model.plugin_config == {}
    assert model.allow_cache is False


def test_multiple_models_keep_their_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "config.json",
        """
        {"model_config_list": [
          {"config": {"name": "resnet", "base_path": "/m/resnet", "nireq": 4, "target_device": "AUTO"}},
          {"config": {"name": "bert", "base_path": "/m/bert", "allow_cache": true}},
          {"config": {"name": "ssd", "base_path": "/m/ssd"}}
        ]}
        """,
    )
    config = load_config(path)
    assert [m.name for m in config.models] == ["resnet", "bert", "ssd"]
    assert config.model("resnet").nireq == 4
    assert config.model("resnet").target_device == "AUTO"
    assert config.model("bert").allow_cache is True


def test_batch_size_auto_and_numbers() -> None:
    def batch(value: str) -> BatchSize | None:
        return parse_config_text(one_model(f'"batch_size": {value}')).models[0].batch_size

    assert batch('"auto"') == BatchSize(auto=True)
    assert batch('"AUTO"') == BatchSize(auto=True)
    assert batch("8") == BatchSize(dim=Dim.static(8))
    assert batch('"8"') == BatchSize(dim=Dim.static(8))
    assert batch('"-1"') == BatchSize(dim=Dim.dynamic())
    assert batch('"1:16"') == BatchSize(dim=Dim(1, 16))


def test_anonymous_shapes() -> None:
    def shape(value: str) -> ShapeConfig:
        return parse_config_text(one_model(f'"shape": {value}')).models[0].shape

    assert shape('"auto"') == ShapeConfig(anonymous=InputShape(auto=True))
    assert shape('"(1,3,224,224)"') == ShapeConfig(anonymous=InputShape(dims=parse_shape("(1,3,224,224)")))
    assert shape('"[1,3,-1,-1]"').anonymous.dims == (Dim.static(1), Dim.static(3), Dim.dynamic(), Dim.dynamic())
    assert shape('"(1,3,200:300,200:300)"').anonymous.dims[2] == Dim(200, 300)
    assert shape("[1, 3, 224, 224]").anonymous == InputShape(dims=parse_shape("(1,3,224,224)"))


def test_per_input_shape_map_and_layouts() -> None:
    config = parse_config_text(
        one_model(
            '"shape": {"data": "(1,3,224,224)", "mask": "auto", "ids": [1, -1]}',
            '"layout": {"data": "NHWC:NCHW"}',
        )
    )
    shape = config.models[0].shape
    assert shape.anonymous is None
    assert shape.per_input == {
        "data": InputShape(dims=parse_shape("(1,3,224,224)")),
        "mask": InputShape(auto=True),
        "ids": InputShape(dims=(Dim.static(1), Dim.dynamic())),
    }
    assert config.models[0].layout == {"data": "NHWC:NCHW"}
    assert parse_config_text(one_model('"layout": "NCHW"')).models[0].layout == "NCHW"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ('{"latest": {"num_versions": 2}}', VersionPolicy(kind="latest", num_versions=2)),
        ('{"latest": {}}', VersionPolicy(kind="latest", num_versions=1)),
        ('{"all": {}}', VersionPolicy(kind="all")),
        ('{"specific": {"versions": [3, 1, 2]}}', VersionPolicy(kind="specific", versions=(1, 2, 3))),
    ],
)
def test_version_policies(policy: str, expected: VersionPolicy) -> None:
    config = parse_config_text(one_model(f'"model_version_policy": {policy}'))
    assert config.models[0].version_policy == expected


def test_plugin_config_keeps_numbers_strings_and_booleans() -> None:
    config = parse_config_text(
        one_model('"plugin_config": {"NUM_STREAMS": 4, "PERFORMANCE_HINT": "THROUGHPUT", "ENABLE_CPU_PINNING": false}')
    )
    assert config.models[0].plugin_config == {
        "NUM_STREAMS": 4,
        "PERFORMANCE_HINT": "THROUGHPUT",
        "ENABLE_CPU_PINNING": False,
    }


def test_yaml_and_json_spellings_load_to_the_same_models(tmp_path: Path) -> None:
    json_path = write(
        tmp_path,
        "config.json",
        """
        {"model_config_list": [{"config": {
            "name": "resnet", "base_path": "models/resnet", "batch_size": "1:16", "shape": {"data": "auto"},
            "layout": "NHWC:NCHW", "model_version_policy": {"specific": {"versions": [1, 2]}},
            "plugin_config": {"NUM_STREAMS": 2, "PERFORMANCE_HINT": "LATENCY"}}}]}
        """,
    )
    yaml_path = write(
        tmp_path,
        "config.yaml",
        """
        # YAML 1.1 would read an unquoted 1:16 as the base-60 number 76; the loader keeps it a range
        model_config_list:
          - config:
              name: resnet
              base_path: models/resnet
              batch_size: 1:16
              shape:
                data: auto
              layout: NHWC:NCHW
              model_version_policy:
                specific:
                  versions: [1, 2]
              plugin_config:
                NUM_STREAMS: 2
                PERFORMANCE_HINT: LATENCY
        """,
    )
    from_json, from_yaml = load_config(json_path), load_config(yaml_path)
    assert from_json.models == from_yaml.models
    assert from_yaml.models[0].batch_size == BatchSize(dim=Dim(1, 16))
    assert from_yaml.models[0].base_path == tmp_path / "models" / "resnet"


def test_sample_configs_all_validate() -> None:
    samples = sorted([*REPO.glob("sample_configs/*.json"), *REPO.glob("sample_configs/*.yaml")])
    assert len(samples) >= 5, samples
    for path in samples:
        result = check_config(path)
        assert result.valid, [issue.format(str(path)) for issue in result.issues]
        assert result.config is not None and result.config.models, path


def test_sample_multi_model_json_and_yaml_agree() -> None:
    json_config = load_config(REPO / "sample_configs" / "multi_model.json")
    yaml_config = load_config(REPO / "sample_configs" / "multi_model.yaml")
    assert json_config.models == yaml_config.models
    assert [m.version_policy.kind for m in json_config.models] == ["latest", "specific", "all"]


def test_schema_file_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads((REPO / "schemas" / "config.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


# ---------------------------------------------------------------------------------------------------------------------
# Paths and formats


def test_relative_base_path_resolves_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = write(
        tmp_path / "conf",
        "config.json",
        """
        {"model_config_list": [
          {"config": {"name": "a", "base_path": "models/a"}},
          {"config": {"name": "b", "base_path": "../shared/b"}},
          {"config": {"name": "c", "base_path": "/abs/c"}}
        ]}
        """,
    )
    models = load_config(path).models
    assert models[0].base_path == tmp_path / "conf" / "models" / "a"
    assert models[1].base_path == tmp_path / "shared" / "b"
    assert models[2].base_path == Path("/abs/c")


def test_relative_base_path_of_a_relative_config_path_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", "config.json", one_model())
    monkeypatch.chdir(tmp_path)
    assert load_config(Path("conf/config.json")).models[0].base_path == tmp_path / "conf" / "models" / "resnet"


def test_base_path_without_a_file_resolves_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_config_text(one_model()).models[0].base_path == tmp_path / "models" / "resnet"
    result = check_config_bytes(one_model().encode())
    assert result.config is not None and result.config.models[0].base_path == tmp_path / "models" / "resnet"


def test_tilde_in_base_path_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse_config_text('{"model_config_list": [{"config": {"name": "a", "base_path": "~/models/a"}}]}')
    assert config.models[0].base_path == tmp_path / "models" / "a"


def test_format_comes_from_the_extension_then_from_the_content() -> None:
    assert config_format(Path("c.json"), "a: 1") == "json"
    assert config_format(Path("c.YAML"), "{}") == "yaml"
    assert config_format(Path("c.yml"), "{}") == "yaml"
    assert config_format(Path("c.conf"), "  \n {") == "json"
    assert config_format(Path("c.conf"), "model_config_list: []") == "yaml"
    assert config_format(None, "# comment\n{}") == "yaml"


def test_content_sniffing_for_other_extensions(tmp_path: Path) -> None:
    as_json = write(tmp_path, "served.conf", one_model())
    as_yaml = write(
        tmp_path, "served.cfg", "model_config_list:\n  - config: {name: resnet, base_path: models/resnet}\n"
    )
    assert load_config(as_json).models == load_config(as_yaml).models


def test_a_json_file_holding_yaml_is_a_json_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "config.json", "model_config_list: []\n")
    (issue,) = check_config(path).issues
    assert issue.message.startswith("invalid JSON: Expecting value")
    assert (issue.line, issue.column) == (1, 1)


def test_json_indented_with_tabs_still_has_positions() -> None:
    text = one_model('"batch_size": "fast"').replace("      ", "\t\t\t")
    issue = only_issue(text)
    assert issue.pointer == f"{CONFIG}/batch_size"
    assert (issue.line, issue.column) == (6, 18)


# ---------------------------------------------------------------------------------------------------------------------
# Broken configs: each reported with its pointer, line, column and a plain message


@pytest.mark.parametrize(
    ("extra", "pointer", "line", "column", "fragment"),
    [
        ('"batchsize": 4', "batchsize", 6, 7, "unknown key 'batchsize' (did you mean 'batch_size'?)"),
        ('"shapes": "auto"', "shapes", 6, 7, "unknown key 'shapes' (did you mean 'shape'?)"),
        (
            '"batch_size": "fast"',
            "batch_size",
            6,
            21,
            "batch_size must be a positive integer, 'auto', '-1' or 'MIN:MAX', got 'fast'",
        ),
        (
            '"batch_size": 0',
            "batch_size",
            6,
            21,
            "batch_size must be a positive integer, 'auto', '-1' or 'MIN:MAX', got 0",
        ),
        ('"batch_size": true', "batch_size", 6, 21, "got true"),
        (
            '"batch_size": "8:2"',
            "batch_size",
            6,
            21,
            "batch_size 8:2 is invalid: range 8:2 must satisfy 0 <= MIN <= MAX",
        ),
        ('"batch_size": "0"', "batch_size", 6, 21, "batch_size 0 is invalid: dimension 0 must be positive or -1"),
        ('"nireq": "4"', "nireq", 6, 16, "nireq must be an integer >= 0, got '4'"),
        ('"nireq": -1', "nireq", 6, 16, "nireq must be an integer >= 0, got -1"),
        ('"allow_cache": "yes"', "allow_cache", 6, 22, "allow_cache must be true or false, got 'yes'"),
        ('"target_device": ""', "target_device", 6, 24, "target_device must be a device name"),
        ('"plugin_config": ["NUM_STREAMS"]', "plugin_config", 6, 24, "plugin_config must be an object"),
        (
            '"plugin_config": {"NUM_STREAMS": [1]}',
            "plugin_config/NUM_STREAMS",
            6,
            40,
            "plugin_config value 'NUM_STREAMS' must be a string, number or boolean, got [1]",
        ),
        (
            '"model_version_policy": {"latest": {}, "all": {}}',
            "model_version_policy",
            6,
            31,
            'model_version_policy must be exactly one of {"latest"',
        ),
        ('"model_version_policy": {}', "model_version_policy", 6, 31, "got {}"),
        (
            '"model_version_policy": {"specific": {"versions": []}}',
            "model_version_policy/specific/versions",
            6,
            57,
            "versions must be a non-empty list of version numbers, got []",
        ),
        (
            '"model_version_policy": {"specific": {"versions": [2, 0]}}',
            "model_version_policy/specific/versions/1",
            6,
            61,
            "each entry of versions must be a positive integer, got 0",
        ),
        (
            '"model_version_policy": {"specific": {}}',
            "model_version_policy/specific",
            6,
            44,
            "missing required key 'versions'",
        ),
        (
            '"model_version_policy": {"latest": {"num_versions": 0}}',
            "model_version_policy/latest/num_versions",
            6,
            59,
            "num_versions must be an integer >= 1, got 0",
        ),
        (
            '"model_version_policy": {"newest": {}}',
            "model_version_policy/newest",
            6,
            32,
            "unknown key 'newest' (expected one of: latest, all, specific)",
        ),
        ('"model_version_policy": {"all": {"x": 1}}', "model_version_policy/all", 6, 39, "all must be an empty object"),
        (
            '"shape": "(1,3,a,224)"',
            "shape",
            6,
            16,
            "shape must be 'auto', a shape like (1,3,224,224), or an object mapping input names to shapes, "
            "got '(1,3,a,224)'",
        ),
        ('"shape": "1,3,224,224"', "shape", 6, 16, "got '1,3,224,224'"),
        ('"shape": "(1,3,0,224)"', "shape", 6, 16, "shape (1,3,0,224) is invalid: dimension 0 must be positive or -1"),
        ('"shape": "(1,3,300:200,224)"', "shape", 6, 16, "range 300:200 must satisfy 0 <= MIN <= MAX"),
        ('"shape": "(1,3,224,224]"', "shape", 6, 16, "must be written like (1,3,224,224)"),
        ('"shape": [1, 0]', "shape", 6, 16, "shape [1, 0] is invalid: dimension 0 must be positive or -1"),
        ('"shape": [1, "a"]', "shape/1", 6, 20, "each entry of shape must be an integer dimension, got 'a'"),
        ('"shape": {}', "shape", 6, 16, "got {}"),
        (
            '"shape": {"data": "fast"}',
            "shape/data",
            6,
            25,
            "shape of input 'data' must be 'auto' or a shape like (1,3,224,224)",
        ),
        (
            '"shape": {"data": "(1,3,-2,4)"}',
            "shape/data",
            6,
            25,
            "shape of input 'data' (1,3,-2,4) is invalid: dimension -2 must be positive or -1",
        ),
        ('"layout": "N C H W"', "layout", 6, 17, "layout must be a layout like 'NCHW' or 'NHWC:NCHW'"),
        ('"layout": {"data": 1}', "layout/data", 6, 26, "layout of input 'data' must be a layout like 'NCHW'"),
        ('"stateful": "yes"', "stateful", 6, 19, "stateful must be true or false, got 'yes'"),
        ('"max_sequence_number": -5', "max_sequence_number", 6, 30, "max_sequence_number must be an integer >= 0"),
    ],
)
def test_broken_model_fields(extra: str, pointer: str, line: int, column: int, fragment: str) -> None:
    issue = only_issue(one_model(extra))
    assert issue.pointer == f"{CONFIG}/{pointer}"
    assert (issue.line, issue.column) == (line, column)
    assert fragment in issue.message


def test_empty_name_and_remote_base_path() -> None:
    text = one_model().replace('"resnet"', '""').replace('"models/resnet"', '"gs://bucket/resnet"')
    name, base_path = issues_of(text)
    assert (name.pointer, name.line, name.column) == (f"{CONFIG}/name", 4, 15)
    assert name.message == "name must be a non-empty string, got ''"
    assert (base_path.pointer, base_path.line, base_path.column) == (f"{CONFIG}/base_path", 5, 20)
    assert "(gs://) base paths are not supported yet" in base_path.message


def test_missing_required_keys_point_at_the_model_config() -> None:
    text = '{"model_config_list": [\n  {"config": {"nme": "resnet"}}\n]}'
    issues = issues_of(text)
    assert [(i.pointer, i.line, i.column, i.message) for i in issues] == [
        (CONFIG, 2, 14, "missing required key 'name'"),
        (CONFIG, 2, 14, "missing required key 'base_path'"),
        (f"{CONFIG}/nme", 2, 15, "unknown key 'nme' (did you mean 'name'?)"),
    ]


def test_entry_without_config_key() -> None:
    text = '{"model_config_list": [\n  {"conf": {"name": "a", "base_path": "b"}},\n  5\n]}'
    issues = issues_of(text)
    assert [(i.pointer, i.line, i.column) for i in issues] == [
        ("/model_config_list/0", 2, 3),
        ("/model_config_list/0/conf", 2, 4),
        ("/model_config_list/1", 3, 3),
    ]
    assert issues[0].message == "missing required key 'config'"
    assert issues[1].message == "unknown key 'conf' (did you mean 'config'?)"
    assert issues[2].message.startswith("each entry of model_config_list must be an object like")
    assert issues[2].message.endswith("got 5")


def test_unknown_top_level_key_and_wrong_list_type() -> None:
    issues = issues_of('{\n  "model_config": [],\n  "model_config_list": {}\n}')
    assert [(i.pointer, i.line, i.column, i.message) for i in issues] == [
        ("/model_config", 2, 3, "unknown key 'model_config' (did you mean 'model_config_list'?)"),
        (
            "/model_config_list",
            3,
            24,
            'model_config_list must be a list of {"config": {...}} entries, got {}',
        ),
    ]


def test_top_level_must_be_an_object() -> None:
    issue = only_issue("[1, 2]")
    assert (issue.pointer, issue.line, issue.column) == ("", 1, 1)
    assert issue.message == "the config must be an object with a model_config_list key, got [1, 2]"


def test_duplicate_model_names_point_at_the_second_one() -> None:
    text = textwrap.dedent(
        """\
        {"model_config_list": [
          {"config": {"name": "resnet", "base_path": "a"}},
          {"config": {"name": "bert", "base_path": "b"}},
          {"config": {"name": "resnet", "base_path": "c"}}
        ]}
        """
    )
    issue = only_issue(text)
    assert (issue.pointer, issue.line, issue.column) == ("/model_config_list/2/config/name", 4, 23)
    assert issue.message == "duplicate model name 'resnet' (first defined at line 2)"


def test_duplicate_keys_are_reported() -> None:
    issue = only_issue(one_model('"nireq": 1', '"nireq": 2'))
    assert (issue.pointer, issue.line, issue.column) == (f"{CONFIG}/nireq", 7, 7)
    assert issue.message == "duplicate key 'nireq' (first at line 6)"


def test_yaml_errors_have_yaml_positions() -> None:
    text = textwrap.dedent(
        """\
        model_config_list:
          - config:
              name: resnet
              base_path: models/resnet
              batch_size: fast
              model_version_policy: {specific: {versions: []}}
        """
    )
    batch, versions = issues_of(text, "yaml")
    assert (batch.pointer, batch.line, batch.column) == (f"{CONFIG}/batch_size", 5, 19)
    assert batch.message.endswith("got 'fast'")
    assert (versions.pointer, versions.line, versions.column) == (
        f"{CONFIG}/model_version_policy/specific/versions",
        6,
        51,
    )


def test_yaml_syntax_error_is_one_issue() -> None:
    text = "model_config_list:\n  - config:\n      name: resnet\n     base_path: x\n"
    issue = only_issue(text, "yaml")
    assert (issue.pointer, issue.line, issue.column) == ("", 4, 6)
    assert issue.message.startswith("invalid YAML: ")


def test_yaml_unclosed_bracket() -> None:
    issue = only_issue("model_config_list:\n  - config:\n      name: [resnet\n      base_path: x\n", "yaml")
    assert (issue.line, issue.column) == (4, 16)
    assert "expected ',' or ']'" in issue.message


def test_yaml_unsafe_tags_are_rejected() -> None:
    issue = only_issue("model_config_list:\n  - !!python/object:os.system {}\n", "yaml")
    assert (issue.line, issue.column) == (2, 5)
    assert issue.message.startswith("invalid YAML: could not determine a constructor for the tag")


def test_json_syntax_error_comes_from_json() -> None:
    text = '{\n  "model_config_list": [\n    {"config": {"name": "a", "base_path": "b",}}\n  ]\n}\n'
    issue = only_issue(text)
    assert (issue.pointer, issue.line, issue.column) == ("", 3, 47)
    assert issue.message == "invalid JSON: Expecting property name enclosed in double quotes"


@pytest.mark.parametrize(("text", "fmt"), [("", "json"), ("  \n\n", "yaml"), ("# only a comment\n", "yaml")])
def test_empty_config_is_an_error(text: str, fmt: str) -> None:
    issue = only_issue(text, fmt)
    assert (issue.pointer, issue.line, issue.column) == ("", 1, 1)
    assert "the config is empty" in issue.message


def test_non_utf8_content_is_one_issue() -> None:
    result = check_config_bytes(b'{\n  "model_config_list": [\xff]\n}')
    (issue,) = result.issues
    assert (issue.line, issue.column) == (2, 25)
    assert issue.message == "the config is not UTF-8 text (byte 0xff)"


def test_every_error_is_reported_at_once_in_reading_order() -> None:
    text = textwrap.dedent(
        """\
        {
          "model_config_list": [
            {"config": {"name": "resnet", "base_path": "r", "batchsize": 4}},
            {"config": {"name": "resnet", "base_path": "r2", "shape": "(1,3,0,224)"}},
            {"config": {"name": "bert", "base_path": "b", "model_version_policy": {"latest": {"num_versions": 0}}}},
            {"config": {"base_path": "x", "nireq": "many"}}
          ],
          "monitor": {}
        }
        """
    )
    issues = issues_of(text)
    assert [(i.pointer, i.line) for i in issues] == [
        ("/model_config_list/0/config/batchsize", 3),
        ("/model_config_list/1/config/name", 4),
        ("/model_config_list/1/config/shape", 4),
        ("/model_config_list/2/config/model_version_policy/latest/num_versions", 5),
        ("/model_config_list/3/config", 6),
        ("/model_config_list/3/config/nireq", 6),
        ("/monitor", 8),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Accepted but not served: warnings


def test_unserved_ovms_features_become_warnings() -> None:
    text = json.dumps(
        {
            "model_config_list": [
                {"config": {"name": "seq", "base_path": "/m/seq", "stateful": True, "max_sequence_number": 100}},
                {"config": {"name": "plain", "base_path": "/m/p", "low_latency_transformation": True}},
                {"config": {"name": "custom", "base_path": "/m/c", "custom_loader_options": {"loader_name": "x"}}},
            ],
            "pipeline_config_list": [{"name": "p1"}, {"name": "p2"}],
            "mediapipe_config_list": [{"name": "graph"}],
            "custom_loader_config_list": [{"config": {"loader_name": "x"}}],
            "custom_node_library_config_list": [],
            "monitoring": {"metrics": {"enable": True}},
        }
    )
    config = parse_config_text(text)
    assert [m.name for m in config.models] == ["seq", "plain", "custom"]
    assert config.warnings == (
        "pipeline_config_list is accepted but not served: pipelines (DAGs) are not supported (2 entries)",
        "mediapipe_config_list is accepted but not served: MediaPipe graphs are not supported (1 entry)",
        "custom_loader_config_list is accepted but not served: custom loaders are not supported (1 entry)",
        "model 'seq' is stateful; stateful models are not supported, it is served as a stateless model",
        "model 'plain': low_latency_transformation is ignored (it applies only to stateful models)",
        "model 'custom': custom_loader_options is ignored (custom loaders are not supported)",
    )


def test_a_config_without_models_is_valid_with_a_warning() -> None:
    config = parse_config_text('{"mediapipe_config_list": []}')
    assert config.models == ()
    assert config.warnings == ("the config has no model_config_list, so no models are served",)


def test_warnings_are_reported_for_invalid_configs_too() -> None:
    result = check_config_text('{"model_config_list": [{"config": {"name": "a"}}], "pipeline_config_list": [{}]}')
    assert not result.valid
    assert result.warnings == (
        "pipeline_config_list is accepted but not served: pipelines (DAGs) are not supported (1 entry)",
    )
    assert result.model_names == ("a",)


# ---------------------------------------------------------------------------------------------------------------------
# ConfigError and load_config


def test_load_config_raises_config_error_listing_every_issue(tmp_path: Path) -> None:
    path = write(tmp_path, "config.json", one_model('"batch_size": "fast"', '"nireq": -1'))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [i.pointer for i in caught.value.issues] == [f"{CONFIG}/batch_size", f"{CONFIG}/nireq"]
    assert str(caught.value).splitlines() == [
        f"{path}: 2 errors in the config",
        f"{path}:6:21: batch_size must be a positive integer, 'auto', '-1' or 'MIN:MAX', got 'fast'",
        f"{path}:7:16: nireq must be an integer >= 0, got -1",
    ]


def test_load_config_of_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.json")
    (issue,) = caught.value.issues
    assert issue.message == "cannot read the config file: No such file or directory"
    assert str(caught.value).endswith(
        f"{tmp_path / 'nope.json'}: cannot read the config file: No such file or directory"
    )


def test_issue_format_without_a_position() -> None:
    assert ConfigIssue("/a/b", "bad").format("c.json") == "c.json: /a/b: bad"
    assert ConfigIssue("", "bad").format("c.json") == "c.json: bad"
    assert ConfigIssue("/a", "bad", 3, 4).format("c.json") == "c.json:3:4: bad"


# ---------------------------------------------------------------------------------------------------------------------
# Single-model config (command-line options)


def test_single_model_config_builds_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = single_model_config(
        model_name="resnet",
        model_path="models/resnet",
        batch_size="auto",
        shape='{"data": "(1,3,224,224)"}',
        layout="NHWC:NCHW",
        model_version_policy='{"specific": {"versions": [2]}}',
        nireq="4",
        plugin_config='{"NUM_STREAMS": 2}',
    )
    assert isinstance(config, ServerConfig)
    (model,) = config.models
    assert model.base_path == tmp_path / "models" / "resnet"
    assert model.batch_size == BatchSize(auto=True)
    assert model.shape.per_input == {"data": InputShape(dims=parse_shape("(1,3,224,224)"))}
    assert model.layout == "NHWC:NCHW"
    assert model.version_policy == VersionPolicy(kind="specific", versions=(2,))
    assert model.nireq == 4
    assert model.plugin_config == {"NUM_STREAMS": 2}


def test_single_model_config_reports_errors_like_a_file() -> None:
    with pytest.raises(ConfigError) as caught:
        single_model_config("resnet", "/m", batch_size="fast", model_version_policy='{"latest": {"num_versions": 0}}')
    assert [(i.pointer, i.line) for i in caught.value.issues] == [
        (f"{CONFIG}/batch_size", None),
        (f"{CONFIG}/model_version_policy/latest/num_versions", None),
    ]
    assert caught.value.issues[0].message.endswith("got 'fast'")
    assert str(caught.value).splitlines()[:2] == [
        "<command line>: 2 errors in the config",
        f"<command line>: {CONFIG}/batch_size: batch_size must be a positive integer, 'auto', '-1' or 'MIN:MAX', "
        "got 'fast'",
    ]


def test_single_model_config_rejects_bad_json_options() -> None:
    with pytest.raises(ConfigError) as caught:
        single_model_config("resnet", "/m", plugin_config="NUM_STREAMS=2", nireq="x")
    nireq, plugin_config = caught.value.issues
    assert (nireq.pointer, nireq.message) == (f"{CONFIG}/nireq", "nireq must be an integer >= 0, got 'x'")
    assert plugin_config.pointer == f"{CONFIG}/plugin_config"
    assert plugin_config.message.startswith("plugin_config is not valid JSON: Expecting value")
