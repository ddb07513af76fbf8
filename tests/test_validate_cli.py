"""``ovmsctl validate``: exit codes, text and JSON reports, stdin, and ``--check-models`` against real tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import openvino as ov
import pytest
from click.testing import CliRunner, Result
from openvino import opset13 as ops

from ovmsctl.commands.config import validate
from ovmsd.source.repository import ModelFileError, find_model_file, list_versions, read_path

CONFIG = "/model_config_list/0/config"


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(validate, list(args), input=stdin)


def save_ir(version_dir: Path, shape: tuple[int, ...] = (1, 3, 4, 4), input_name: str = "data") -> Path:
    """A real OpenVINO IR (relu of one f32 input) at ``version_dir/model.xml`` with ``model.bin`` beside it."""
    param = ops.parameter(list(shape), ov.Type.f32, name=input_name)
    param.output(0).get_tensor().set_names({input_name})
    model = ov.Model([ops.relu(param)], [param], "tiny")
    version_dir.mkdir(parents=True, exist_ok=True)
    path = version_dir / "model.xml"
    ov.save_model(model, path)
    return path


def config_file(directory: Path, **fields: object) -> Path:
    """``directory/config.json`` with one model ``tiny`` (base path ``models/tiny``) and ``fields`` added.

    One key per line: name on line 4, base_path on line 5, then ``fields`` in order from line 6.
    """
    config = {"name": "tiny", "base_path": "models/tiny", **fields}
    body = ",\n".join(f"      {json.dumps(k)}: {json.dumps(v)}" for k, v in config.items())
    path = directory / "config.json"
    path.write_text('{\n  "model_config_list": [\n    {"config": {\n' + body + "\n    }}\n  ]\n}\n")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Exit codes and reports


def test_valid_config_exits_0(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    result = run(str(path))
    assert result.exit_code == 0, result.output
    assert result.output == f"{path}: valid, 1 model\n"


def test_invalid_config_lists_every_issue_and_exits_1(tmp_path: Path) -> None:
    path = config_file(tmp_path, batch_size="fast", batchsize=1)
    result = run(str(path))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{path}:6:21: batch_size must be a positive integer, 'auto', '-1' or 'MIN:MAX', got 'fast'",
        f"{path}:7:7: unknown key 'batchsize' (did you mean 'batch_size'?)",
        f"{path}: 2 errors",
    ]


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run(str(tmp_path / "missing.json"))
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run(str(tmp_path))
    assert result.exit_code == 2
    assert "is a directory" in result.output


def test_no_argument_is_a_usage_error() -> None:
    result = run()
    assert result.exit_code == 2
    assert "Missing argument 'CONFIG'" in result.output


def test_warnings_are_printed_before_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model_config_list:\n  - config: {name: a, base_path: /m/a}\npipeline_config_list: [{name: p}]\n")
    result = run(str(path))
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "warning: pipeline_config_list is accepted but not served: pipelines (DAGs) are not supported (1 entry)",
        f"{path}: valid, 1 model",
    ]


def test_json_report_of_a_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "model_config_list": [
                    {"config": {"name": "a", "base_path": "/m/a"}},
                    {"config": {"name": "b", "base_path": "/m/b"}},
                ],
                "monitoring": {},
            }
        )
    )
    result = run(str(path), "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {
        "valid": True,
        "path": str(path),
        "models": ["a", "b"],
        "errors": [],
        "warnings": [],
    }


def test_json_report_of_an_invalid_config(tmp_path: Path) -> None:
    path = config_file(tmp_path, nireq=-1)
    result = run("--json", str(path))
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["valid"] is False
    assert report["models"] == ["tiny"]
    assert report["errors"] == [
        {"pointer": f"{CONFIG}/nireq", "line": 6, "column": 16, "message": "nireq must be an integer >= 0, got -1"}
    ]


def test_syntax_error_report(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model_config_list:\n  - config:\n      name: [a\n")
    result = run(str(path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{path}:4:1: invalid YAML: ")
    assert lines[1] == f"{path}: 1 error"


# ---------------------------------------------------------------------------------------------------------------------
# stdin


def test_stdin_yaml(tmp_path: Path) -> None:
    result = run("-", stdin="model_config_list:\n  - config:\n      name: a\n      base_path: /m/a\n      nireq: x\n")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "<stdin>:5:14: nireq must be an integer >= 0, got 'x'",
        "<stdin>: 1 error",
    ]


def test_stdin_json_resolves_base_paths_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_ir(tmp_path / "models" / "tiny" / "1")
    monkeypatch.chdir(tmp_path)
    stdin = json.dumps({"model_config_list": [{"config": {"name": "tiny", "base_path": "models/tiny"}}]})
    result = run("-", "--check-models", "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["path"] == "-"
    assert run("-", stdin="").output.splitlines() == ["<stdin>:1:1: the config is empty", "<stdin>: 1 error"]


# ---------------------------------------------------------------------------------------------------------------------
# --check-models


def test_check_models_accepts_a_real_model(tmp_path: Path) -> None:
    save_ir(tmp_path / "models" / "tiny" / "1")
    path = config_file(tmp_path, shape={"data": "(1,3,8,8)"}, layout={"data": "NCHW"})
    result = run(str(path), "--check-models")
    assert result.exit_code == 0, result.output
    assert result.output == f"{path}: valid, 1 model\n"


def test_check_models_missing_base_path(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    result = run(str(path), "--check-models")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{path}:5:20: model 'tiny': base path {tmp_path / 'models' / 'tiny'} does not exist",
        f"{path}: 1 error",
    ]


def test_check_models_base_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").write_text("not a directory")
    result = run(str(config_file(tmp_path)), "--check-models", "--json")
    (error,) = json.loads(result.output)["errors"]
    assert error["pointer"] == f"{CONFIG}/base_path"
    assert error["message"].endswith("is not a directory")


def test_check_models_without_version_directories(tmp_path: Path) -> None:
    base = tmp_path / "models" / "tiny"
    save_ir(base / "latest")  # a model, but not in a numbered directory
    (base / "0").mkdir()
    result = run(str(config_file(tmp_path)), "--check-models", "--json")
    assert result.exit_code == 1
    (error,) = json.loads(result.output)["errors"]
    assert (error["pointer"], error["line"], error["column"]) == (f"{CONFIG}/base_path", 5, 20)
    assert error["message"] == (
        f"model 'tiny': {base} has no version directories (expected numbered ones like {base}/1/); "
        "it holds only 0, latest"
    )


def test_check_models_ambiguous_version_directory(tmp_path: Path) -> None:
    version_dir = tmp_path / "models" / "tiny" / "1"
    save_ir(version_dir)
    (version_dir / "other.onnx").write_bytes(b"onnx")
    result = run(str(config_file(tmp_path)), "--check-models")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"{tmp_path / 'config.json'}:3:16: model 'tiny' version 1: {version_dir} holds more than one model file "
        "(model.xml, other.onnx); keep exactly one"
    )


def test_check_models_xml_without_bin(tmp_path: Path) -> None:
    version_dir = tmp_path / "models" / "tiny" / "1"
    save_ir(version_dir)
    (version_dir / "model.bin").unlink()
    result = run(str(config_file(tmp_path)), "--check-models", "--json")
    (error,) = json.loads(result.output)["errors"]
    assert error["pointer"] == CONFIG
    assert error["message"].startswith(f"model 'tiny' version 1: {version_dir} holds no model file")
    assert error["message"].endswith("model.xml has no .bin beside it")


def test_check_models_unreadable_model(tmp_path: Path) -> None:
    version_dir = tmp_path / "models" / "tiny" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "model.xml").write_text("<net>not really</net>")
    (version_dir / "model.bin").write_bytes(b"")
    result = run(str(config_file(tmp_path)), "--check-models", "--json")
    (error,) = json.loads(result.output)["errors"]
    assert error["message"].startswith("model 'tiny' version 1: OpenVINO cannot read model.xml: ")
    assert "Exception from" not in error["message"]


def test_check_models_wrong_input_name(tmp_path: Path) -> None:
    save_ir(tmp_path / "models" / "tiny" / "1")
    path = config_file(tmp_path, shape={"dta": "(1,3,8,8)"})
    result = run(str(path), "--check-models", "--json")
    assert result.exit_code == 1
    (error,) = json.loads(result.output)["errors"]
    assert (error["pointer"], error["line"], error["column"]) == (f"{CONFIG}/shape/dta", 6, 24)
    assert (
        error["message"] == "model 'tiny' version 1 has no input named 'dta' (its inputs: data); did you mean 'data'?"
    )


def test_check_models_wrong_rank(tmp_path: Path) -> None:
    save_ir(tmp_path / "models" / "tiny" / "1")
    result = run(str(config_file(tmp_path, shape="(1,3,8)")), "--check-models", "--json")
    (error,) = json.loads(result.output)["errors"]
    assert error["pointer"] == f"{CONFIG}/shape"
    assert error["message"] == (
        "model 'tiny' version 1: the configured shape (1,3,8) has 3 dimensions, but the model input has 4 ([1,3,4,4])"
    )


def test_check_models_anonymous_shape_needs_one_input(tmp_path: Path) -> None:
    version_dir = tmp_path / "models" / "tiny" / "1"
    version_dir.mkdir(parents=True)
    a = ops.parameter([1, 4], ov.Type.f32, name="a")
    b = ops.parameter([1, 4], ov.Type.f32, name="b")
    a.output(0).get_tensor().set_names({"a"})
    b.output(0).get_tensor().set_names({"b"})
    ov.save_model(ov.Model([ops.add(a, b)], [a, b], "two"), version_dir / "model.xml")
    result = run(str(config_file(tmp_path, shape="(1,8)")), "--check-models", "--json")
    (error,) = json.loads(result.output)["errors"]
    assert "has no input name, but the model has 2 inputs (a, b)" in error["message"]
    assert run(str(config_file(tmp_path, shape="auto")), "--check-models").exit_code == 0


def test_check_models_only_checks_the_versions_the_policy_serves(tmp_path: Path) -> None:
    base = tmp_path / "models" / "tiny"
    (base / "1").mkdir(parents=True)  # broken, but not served: latest 1 serves version 2
    save_ir(base / "2")
    assert run(str(config_file(tmp_path)), "--check-models").exit_code == 0
    result = run(str(config_file(tmp_path, model_version_policy={"all": {}})), "--check-models", "--json")
    (error,) = json.loads(result.output)["errors"]
    assert error["message"].startswith(f"model 'tiny' version 1: {base / '1'} holds no model file")


def test_check_models_specific_version_missing(tmp_path: Path) -> None:
    save_ir(tmp_path / "models" / "tiny" / "1")
    path = config_file(tmp_path, model_version_policy={"specific": {"versions": [1, 3]}})
    result = run(str(path), "--check-models", "--json")
    (error,) = json.loads(result.output)["errors"]
    assert (error["pointer"], error["line"]) == (f"{CONFIG}/model_version_policy", 6)
    assert error["message"] == "model 'tiny': version 3 named by model_version_policy not found (on disk: 1)"


def test_check_models_is_skipped_for_an_invalid_config(tmp_path: Path) -> None:
    path = config_file(tmp_path, nireq=-1)
    result = run(str(path), "--check-models")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"{path}: 1 error (models not checked)"


# ---------------------------------------------------------------------------------------------------------------------
# The repository helpers --check-models is built on


def test_list_versions_skips_everything_but_numbered_directories(tmp_path: Path) -> None:
    for name in ("1", "2", "10", "0", "01", "v3", ".hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "3").write_text("a file, not a version")
    assert list_versions(tmp_path) == ([1, 2, 10], [".hidden", "0", "01", "3", "v3"])


def test_list_versions_of_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list_versions(tmp_path / "missing")


@pytest.mark.parametrize("name", ["model.onnx", "model.tflite", "model.pdmodel", "saved_model.pb"])
def test_find_model_file_recognizes_each_format(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"x")
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / "._model.onnx").write_bytes(b"macOS metadata")
    assert find_model_file(tmp_path) == tmp_path / name


def test_read_path_of_a_saved_model_is_its_directory(tmp_path: Path) -> None:
    assert read_path(tmp_path / "saved_model.pb") == tmp_path
    assert read_path(tmp_path / "model.xml") == tmp_path / "model.xml"


def test_find_model_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"holds no model file \(expected a \.xml with its \.bin beside it"):
        find_model_file(tmp_path)
    (tmp_path / "a.onnx").write_bytes(b"x")
    (tmp_path / "b.tflite").write_bytes(b"x")
    with pytest.raises(ModelFileError, match=r"more than one model file \(a\.onnx, b\.tflite\)"):
        find_model_file(tmp_path)
