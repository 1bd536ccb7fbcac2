"""genrt.contract_checks: file names a manifest holds stay inside the model directory; fields have their JSON
types. (read_manifest's use of both is tested in test_contract.py.)"""
from genrt.contract import FacesManifest, PoemsManifest
from genrt.contract_checks import field_type_problems, file_fields, file_name_problem


def test_file_fields_lists_every_file_name_but_an_empty_optional_one():
    data = {"encoder_file": "e.onnx", "t2s_file": "", "thumbnail_file": "t.png", "d_model": 32,
            "graphs": {"encoder": {"file": "e.onnx"}, "decoder": {"inputs": []}, "broken": "x"}}
    assert file_fields(data) == [("encoder_file", "e.onnx"), ("thumbnail_file", "t.png"),
                                 ("graphs.encoder.file", "e.onnx")]
    assert file_fields({"t2s_file": "t2s.json", "graphs": []}) == [("t2s_file", "t2s.json")]


def test_file_name_problem_names_why_a_file_is_not_inside(tmp_path):
    (tmp_path / "generator.onnx").write_bytes(b"")
    assert file_name_problem(tmp_path, "generator.onnx") is None
    assert file_name_problem(tmp_path, "sub/not_yet_there.onnx") is None   # existence is checked elsewhere
    assert file_name_problem(tmp_path, "  ").startswith("must be a file name")
    assert file_name_problem(tmp_path, 3).startswith("must be a file name")
    assert file_name_problem(tmp_path, "/etc/passwd").startswith("is an absolute path")
    assert file_name_problem(tmp_path, "D:generator.onnx").startswith("is an absolute path")
    assert file_name_problem(tmp_path, "a/../generator.onnx").startswith("contains '..'")
    (tmp_path / "out.onnx").symlink_to(tmp_path.parent)
    assert file_name_problem(tmp_path, "out.onnx").startswith("resolves outside the model directory")


def test_field_type_problems_names_every_wrong_type():
    assert field_type_problems(FacesManifest, {"nz": 8, "graph_file": "g.onnx", "training": {}}) == []
    problems = field_type_problems(FacesManifest, {"nz": True, "image_size": "64", "training": []})
    assert problems == ["field 'nz' must be int, got True", "field 'image_size' must be int, got '64'",
                        "field 'training' must be dict, got []"]
    assert field_type_problems(PoemsManifest, {"vocab": ["a", "b"], "scoring": False}) == []
    assert field_type_problems(PoemsManifest, {"vocab": ["a", 1], "scoring": 0}) == [
        "field 'vocab' must be a list of strings, got ['a', 1]", "field 'scoring' must be bool, got 0"]
