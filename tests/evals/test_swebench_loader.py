"""SWE-bench loaders: instance files (JSON, JSONL, parquet) and predictions, and their errors on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mdap.errors import ConfigError
from mdap.evals.swebench import SWEInstance, load_instances, load_predictions, mini_data_dir

SHIPPED = mini_data_dir() / "instances.json"


def _records() -> list[dict[str, object]]:
    return json.loads(SHIPPED.read_text())


def _jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_shipped_instances_load_with_test_lists_decoded() -> None:
    instances = load_instances(SHIPPED)
    assert len(instances) >= 5
    assert len({i.repo for i in instances}) == len(instances)
    for inst in instances:
        raw = next(r for r in _records() if r["instance_id"] == inst.instance_id)
        assert isinstance(raw["FAIL_TO_PASS"], str)  # the file format: JSON strings
        assert json.loads(raw["FAIL_TO_PASS"]) == inst.FAIL_TO_PASS and inst.FAIL_TO_PASS
        assert json.loads(raw["PASS_TO_PASS"]) == inst.PASS_TO_PASS and inst.PASS_TO_PASS
        assert inst.patch.startswith("diff --git") and inst.test_patch.startswith("diff --git")
        assert inst.record()["FAIL_TO_PASS"] == raw["FAIL_TO_PASS"]


def test_jsonl_json_and_parquet_give_the_same_instances(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = _records()
    from_json = load_instances(SHIPPED)
    from_jsonl = load_instances(_jsonl(tmp_path / "i.jsonl", records))
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "i.parquet")
    from_parquet = load_instances(tmp_path / "i.parquet")
    assert from_json == from_jsonl == from_parquet


def test_optional_5x_fields_and_list_valued_tests(tmp_path: Path) -> None:
    record = {
        **_records()[0],
        "image": "swebench/sweb.eval.x86_64.mdap:latest",
        "eval_script": "pytest -rA tests",
        "log_parser": "parse_log_pytest",
        "eval_type": "pass_and_fail",
        "FAIL_TO_PASS": ["tests/a.py::t"],
        "version": 1.2,
    }
    (inst,) = load_instances(_jsonl(tmp_path / "x.jsonl", [record]))
    assert inst.image == "swebench/sweb.eval.x86_64.mdap:latest"
    assert inst.log_parser == "parse_log_pytest" and inst.eval_type == "pass_and_fail"
    assert inst.FAIL_TO_PASS == ["tests/a.py::t"]
    assert inst.version == "1.2"


def test_ids_filter_keeps_order_and_rejects_unknown_ids() -> None:
    ids = [r["instance_id"] for r in _records()]
    picked = load_instances(SHIPPED, ids=[ids[2], ids[0]])
    assert [i.instance_id for i in picked] == [ids[0], ids[2]]
    with pytest.raises(ConfigError, match="no instance with id nope__nope-1"):
        load_instances(SHIPPED, ids=["nope__nope-1"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r.pop("base_commit"),
            r"line 2 \(instance 'mdap-mini__spans-1'\): field base_commit: Field required",
        ),
        (lambda r: r.update(FAIL_TO_PASS="[not json"), r"line 2 .*field FAIL_TO_PASS: .*not JSON"),
        (lambda r: r.update(PASS_TO_PASS="[1, 2]"), r"line 2 .*field PASS_TO_PASS: .*list of test ids"),
        (lambda r: r.update(repo="no-slash"), r"line 2 .*field repo: String should match"),
        (lambda r: r.update(instance_id="mdap-mini__slugkit-1"), r"line 2 .*duplicate instance_id"),
    ],
)
def test_malformed_jsonl_names_file_line_instance_and_field(tmp_path: Path, mutate: object, message: str) -> None:
    records = _records()[:3]
    mutate(records[1])  # type: ignore[operator]
    path = _jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(ConfigError, match=message) as err:
        load_instances(path)
    assert str(path) in str(err.value)


def test_malformed_files_have_clear_errors(tmp_path: Path) -> None:
    lines = tmp_path / "lines.jsonl"
    lines.write_text(json.dumps(_records()[0]) + "\n{oops\n")
    with pytest.raises(ConfigError, match=r"lines.jsonl: line 2 is not valid JSON"):
        load_instances(lines)
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([_records()[0], "text"]))
    with pytest.raises(ConfigError, match=r"list.json: item 1 must be a JSON object"):
        load_instances(listed)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"instance_id": "a",\n')
    with pytest.raises(ConfigError, match=r"broken.json: not valid JSON \(line 2\)"):
        load_instances(broken)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="no instances"):
        load_instances(empty)
    with pytest.raises(ConfigError, match="does not exist"):
        load_instances(tmp_path / "missing.json")


def test_parquet_without_pyarrow_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "i.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"pip install 'mdap\[swebench\]'"):
        load_instances(path)


def test_damaged_parquet_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "i.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ConfigError, match=r"i.parquet: cannot read the parquet file"):
        load_instances(path)


def test_predictions_jsonl_json_list_and_keyed_object(tmp_path: Path) -> None:
    preds = [
        {"instance_id": "a", "model_name_or_path": "m", "model_patch": "diff --git a/x b/x\n"},
        {"instance_id": "b", "model_name_or_path": "m", "model_patch": None},
    ]
    jsonl = _jsonl(tmp_path / "p.jsonl", [*preds, {**preds[0], "model_patch": "later"}])
    loaded = load_predictions(jsonl)
    assert list(loaded) == ["a", "b"]
    assert loaded["a"].model_patch == "later"  # the last prediction of an instance wins (resumed runs append)
    assert loaded["b"].model_patch is None
    (tmp_path / "p.json").write_text(json.dumps(preds))
    assert list(load_predictions(tmp_path / "p.json")) == ["a", "b"]
    (tmp_path / "k.json").write_text(json.dumps({"a": {"model_patch": "x"}}))
    assert load_predictions(tmp_path / "k.json")["a"].model_patch == "x"


def test_malformed_predictions_name_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"instance_id": "a", "model_patch": ""}\n{"model_patch": "x"}\n')
    with pytest.raises(ConfigError, match=r"p.jsonl: line 2: field instance_id: Field required"):
        load_predictions(path)
    path.write_text('{"instance_id": "a"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"p.jsonl: line 2 is not valid JSON"):
        load_predictions(path)


def test_instance_model_rejects_a_bad_commit() -> None:
    record = {**_records()[0], "base_commit": "zzz"}
    with pytest.raises(ValueError, match="base_commit"):
        SWEInstance.model_validate(record)
