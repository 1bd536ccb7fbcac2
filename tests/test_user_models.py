"""genrt.user_models: variants copied from a checkout into the user models folder, found there by precision."""
import json
import shutil

import pytest

from genrt.contract import ManifestError
from genrt.runtime import model_dir_or_bundled
from genrt.user_models import find_variants, install_variant, source_models_dir


@pytest.fixture
def checkout(tmp_path, tiny_faces_model):
    """A folder laid out as a checkout: genrt/models/faces (fp32), plus a stray file the loader would refuse."""
    models = tmp_path / "checkout" / "genrt" / "models"
    shutil.copytree(tiny_faces_model, models / "faces")
    (models / "faces" / "notes.txt").write_text("not part of the model")
    return tmp_path / "checkout"


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    folder = tmp_path / "user_models"
    monkeypatch.setenv("GENRT_MODELS", str(folder))
    return folder


def test_install_copies_the_manifest_and_its_files_only(checkout, user_models):
    dest = install_variant(checkout, "faces", "fp32")
    assert dest == user_models / "faces"
    assert sorted(p.name for p in dest.iterdir()) == ["discriminator.onnx", "generator.onnx", "manifest.json"]
    assert model_dir_or_bundled(None, "faces", "", precision="fp32") == dest
    assert [p.name for p in user_models.iterdir()] == ["faces"]           # no staging folder left behind
    found = {(v.name, v.precision): v for v in find_variants()}
    assert found["faces", "fp32"].where == dest and found["faces", "fp32"].installed


def test_a_models_folder_is_a_source_too(checkout, user_models):
    assert source_models_dir(checkout / "genrt" / "models") == checkout / "genrt" / "models"
    assert install_variant(checkout / "genrt" / "models", "faces", "fp32").is_dir()


def test_an_installed_variant_is_replaced_only_with_force(checkout, user_models):
    install_variant(checkout, "faces", "fp32")
    with pytest.raises(ValueError, match="exists; use --force"):
        install_variant(checkout, "faces", "fp32")
    (user_models / "faces" / "generator.onnx").write_bytes(b"stale")
    install_variant(checkout, "faces", "fp32", force=True)
    assert (user_models / "faces" / "generator.onnx").read_bytes() != b"stale"
    assert [p.name for p in user_models.iterdir()] == ["faces"]


def test_a_wrong_precision_or_missing_source_is_refused(checkout, user_models, tmp_path):
    manifest = checkout / "genrt" / "models" / "faces" / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "precision": "int8"}))
    with pytest.raises(ManifestError, match="precision is 'int8'"):
        install_variant(checkout, "faces", "fp32")
    with pytest.raises(ManifestError, match="no such directory"):
        install_variant(checkout, "poems", "fp32")
    with pytest.raises(ValueError, match="neither a genrt checkout"):
        install_variant(tmp_path / "user_models", "faces", "fp32")
    assert not user_models.exists() or not any(user_models.iterdir())


def test_without_a_home_directory_only_the_bundled_models_are_listed_and_install_says_why(checkout, monkeypatch):
    import genrt.user_models as um
    monkeypatch.setattr(um, "user_models_dir", lambda: None)      # HOME unset and no password entry
    found = {(v.name, v.precision): v for v in find_variants()}
    assert not any(v.installed for v in found.values()) and found["poems", "int8"].where is not None
    with pytest.raises(ValueError, match="no user models folder .*GENRT_MODELS"):
        install_variant(checkout, "faces", "fp32")


def test_a_source_whose_graphs_do_not_open_is_refused_and_the_installed_copy_kept(checkout, user_models):
    install_variant(checkout, "faces", "fp32")
    before = (user_models / "faces" / "generator.onnx").read_bytes()
    graph = checkout / "genrt" / "models" / "faces" / "generator.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])                                  # cut short
    with pytest.raises(ManifestError, match="cannot load generator.onnx") as caught:
        install_variant(checkout, "faces", "fp32", force=True)
    assert ".faces-" not in str(caught.value)                                     # names the source, not staging
    assert (user_models / "faces" / "generator.onnx").read_bytes() == before
    assert [p.name for p in user_models.iterdir()] == ["faces"]


def test_a_broken_installed_copy_is_listed_and_its_error_names_the_fix(checkout, user_models):
    from genrt.faces.generator import FaceGenerator
    install_variant(checkout, "faces", "fp32")
    (user_models / "faces" / "manifest.json").write_text("{")
    found = {(v.name, v.precision): v for v in find_variants()}
    assert "not valid JSON" in found["faces", "fp32"].problem
    with pytest.raises(ManifestError, match="install it again .* or remove"):
        FaceGenerator.load(provider="cpu", precision="fp32")


def test_a_user_models_folder_that_is_a_file_is_named(checkout, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("GENRT_MODELS", str(tmp_path / "afile"))
    with pytest.raises(ValueError, match="cannot use .*afile as the user models folder"):
        install_variant(checkout, "faces", "fp32")


def test_a_folder_holding_only_another_precision_is_a_source(tmp_path, tiny_faces_model, user_models):
    import json as _json
    variant = tmp_path / "only_int8" / "faces_int8"
    shutil.copytree(tiny_faces_model, variant)
    manifest = variant / "manifest.json"
    manifest.write_text(_json.dumps({**_json.loads(manifest.read_text()), "precision": "int8"}))
    assert source_models_dir(tmp_path / "only_int8") == tmp_path / "only_int8"
    assert install_variant(tmp_path / "only_int8", "faces", "int8") == user_models / "faces_int8"
