"""Model variants installed into the user models folder ($GENRT_MODELS, else ~/.genrt/models).

The wheel carries the variants the CPU default runs (int8). Other precisions live in a genrt checkout (fp32, the
CUDA default, is kept in git under genrt/models) or are exported there; `genrt models install fp32 --from
CHECKOUT` copies them into the user models folder, where the loader finds them by precision (genrt.runtime): no
torch, no network, nothing in site-packages edited.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from genrt.contract import FACES_KIND, MANIFEST_NAME, POEMS_KIND, ManifestError, contained_file, read_manifest
from genrt.runtime import PRECISIONS, USER_MODELS_ENV, bundled_model_dir, open_model_dir, user_models_dir

MODEL_KINDS = {"faces": FACES_KIND, "poems": POEMS_KIND}


def variant_name(name: str, precision: str) -> str:
    """Directory name of a model variant: faces, faces_int8, poems_fp16 ... (fp32 has no suffix)."""
    return name if precision == "fp32" else f"{name}_{precision}"


def source_models_dir(source: str | Path) -> Path:
    """The models folder of `source`: a genrt checkout (its genrt/models) or a folder holding model directories."""
    source = Path(source).expanduser()
    variants = [variant_name(name, precision) for name in MODEL_KINDS for precision in PRECISIONS]
    for folder in (source / "genrt" / "models", source):
        if folder.is_dir() and any((folder / variant).is_dir() for variant in variants):
            return folder
    raise ValueError(f"{source} is neither a genrt checkout nor a folder of model directories "
                     f"({', '.join(variants[:4])}, ...)")


def install_variant(source: str | Path, name: str, precision: str, force: bool = False) -> Path:
    """Copy one checked model directory (the manifest and the files it names, nothing else) from `source`
    (source_models_dir) into the user models folder. Copied into a temporary directory beside the target, checked
    there, then renamed into place: an interrupted install never leaves half a model where genrt looks."""
    if name not in MODEL_KINDS or precision not in PRECISIONS:
        raise ValueError(f"unknown model {name!r} or precision {precision!r}")
    variant = variant_name(name, precision)
    src = source_models_dir(source) / variant
    manifest = read_manifest(src, expected_kind=MODEL_KINDS[name])
    if manifest.precision != precision:
        raise ManifestError(str(src), [f"precision is {manifest.precision!r}, expected {precision!r}"])
    folder = user_models_dir()
    if folder is None:
        raise ValueError(f"there is no user models folder (no home directory): set ${USER_MODELS_ENV} to one")
    dest = folder / variant
    if dest.resolve() == src.resolve():
        return dest
    if dest.exists() and not force:
        raise ValueError(f"{dest} exists; use --force to replace it")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot use {dest.parent} as the user models folder (${USER_MODELS_ENV}): "
                         f"{e.strerror or e}") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{variant}-", dir=dest.parent))
    try:
        for file in (MANIFEST_NAME, *manifest.graph_files(), *manifest.extra_files()):
            shutil.copyfile(contained_file(src, file), staging / file)
        try:                    # every graph opened and checked against the contract, as genrt will open it
            open_model_dir(staging, MODEL_KINDS[name], provider="cpu", threads=1, spin=False)
        except ManifestError as e:
            raise ManifestError(str(src), [p.replace(str(staging), str(src)) for p in e.problems]) from None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{variant}-old-", dir=dest.parent))
            dest.rename(old / variant)
            staging.rename(dest)
            shutil.rmtree(old)
        else:
            staging.rename(dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return dest


@dataclass(frozen=True)
class Variant:
    name: str              # faces / poems
    precision: str
    where: Path | None     # the directory the loader would open for this precision, None when there is none
    installed: bool        # in the user models folder (True) or bundled in the package (False)
    problem: str | None = None  # why its manifest cannot be read (a broken copy), None when it reads



def find_variants() -> list[Variant]:
    """Every model and precision, and where genrt finds it: the user models folder first, then the package."""
    found, folder = [], user_models_dir()                  # None: no home directory, only the bundled ones
    for name in MODEL_KINDS:
        for precision in PRECISIONS:
            variant = variant_name(name, precision)
            user, bundled = None if folder is None else folder / variant, bundled_model_dir(variant)
            if user is not None and (user / MANIFEST_NAME).is_file():
                found.append(Variant(name, precision, user, True, _manifest_problem(user, MODEL_KINDS[name])))
            elif (bundled / MANIFEST_NAME).is_file():
                found.append(Variant(name, precision, bundled, False, _manifest_problem(bundled, MODEL_KINDS[name])))
            else:
                found.append(Variant(name, precision, None, False))
    return found


def _manifest_problem(folder: Path, kind: str) -> str | None:
    try:
        read_manifest(folder, expected_kind=kind)
    except (ManifestError, OSError) as e:
        return " ".join(str(e).split())
    return None
