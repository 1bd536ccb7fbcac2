"""Train faces and poems on a lent GPU within one bounded run, and bring the weights back in small files.

    python -m trainers.gpu_run train --what faces --data .gpu/celeba --out "$OUT" --minutes 8 [--init FILE]
    python -m trainers.gpu_run train --what poems --cache .gpu/poems --out "$OUT" --minutes 8 [--init FILE]
    python -m trainers.gpu_run join "$FILES_AT"/faces_weights.pt.part* --out runs/gpu/faces_weights.pt

A lent machine runs one command for at most 10 minutes, carries at most 64 MiB of files there and brings back files
of at most 16 MB. So `train` runs one trainer (faces: trainers.faces, poems: trainers.poems) on CUDA with bf16
autocast for a wall-clock budget (`--max-minutes`: the trainer checkpoints and stops when it is spent; any other
option is the trainer's own, e.g. `--steps`, `--resume`), writes the
compact weights-only checkpoint (fp16 faces, bf16 poems: what `--init-from` and the exporters read), and splits it
into parts of at most `--part-mb` MB; the training checkpoint itself (with optimizer state) stays there. The data
travels as files under the working tree that git ignores: the CelebA JPEGs (36 MB) for faces, the corpus cache
(`python -m trainers.poems_corpus`, 52 MB) for poems, one kind a call. `join` puts the parts back together here,
checking their count and the file's hash. docs/training.md has the calls.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

PART_MB = 15.0                     # under the 16 MB a lent machine's files may each be
KINDS = ("faces", "poems")


def split(path: Path, part_mb: float = PART_MB) -> list[Path]:
    """`path` as path.part000, path.part001, ... of at most part_mb MB, and path.split.json (count, sha256)."""
    data, size = path.read_bytes(), int(part_mb * 1e6)
    parts = []
    for i in range(0, max(1, len(data)), size):
        part = path.with_name(f"{path.name}.part{i // size:03d}")
        part.write_bytes(data[i:i + size])
        parts.append(part)
    path.with_name(f"{path.name}.split.json").write_text(json.dumps(
        {"file": path.name, "parts": len(parts), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
    return parts


def join(parts: list[Path], out: Path) -> Path:
    """The file `split` cut into `parts` (any order), checked against its split.json."""
    parts = sorted(parts)
    if not parts:
        raise SystemExit("join: no parts given")
    name = parts[0].name.rsplit(".part", 1)[0]
    record = json.loads(parts[0].with_name(f"{name}.split.json").read_text())
    if len(parts) != record["parts"]:
        raise SystemExit(f"join: {len(parts)} parts of {name}, expected {record['parts']}")
    data = b"".join(p.read_bytes() for p in parts)
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise SystemExit(f"join: the parts of {name} do not add up to the file that was split (sha256 differs)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def train(what: str, source: Path, out: Path, minutes: float, init: Path | None = None, device: str = "auto",
          amp: bool = True, part_mb: float = PART_MB, extra: list[str] | None = None) -> list[Path]:
    """Run one trainer for `minutes` into out/run, then write out/<what>_weights.pt in parts. -> the parts."""
    run = out / "run"
    common = ["--out", str(run), "--device", device, "--max-minutes", str(minutes), *(["--amp"] if amp else []),
              *(extra or [])]                        # e.g. --steps, --lr: the trainer's own settings
    if init is not None:
        common += ["--init-from", str(init)]
    if what == "faces":
        from trainers.faces import main as faces_main
        from trainers.faces import save_weights
        faces_main(["--data", str(source), *common])
        weights = save_weights(run / "checkpoint.pt", out / "faces_weights.pt")
    else:
        from trainers.poems import compact_checkpoint
        from trainers.poems import main as poems_main
        poems_main(["--cache", str(source), *common])
        weights = compact_checkpoint(run / "checkpoint.pt", out / "poems_weights.pt")
    parts = split(weights, part_mb)
    weights.unlink()
    return parts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one model for a time budget and write its weights in parts")
    t.add_argument("--what", choices=KINDS, required=True)
    t.add_argument("--data", type=Path, help="faces: the folder of face images")
    t.add_argument("--cache", type=Path, help="poems: the corpus cache folder")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--minutes", type=float, default=8.0, help="training time (the run checkpoints and stops)")
    t.add_argument("--init", type=Path, default=None, help="weights-only checkpoint to start from")
    t.add_argument("--device", default="auto")
    t.add_argument("--no-amp", action="store_true")
    t.add_argument("--part-mb", type=float, default=PART_MB)
    j = sub.add_parser("join", help="put a split file back together")
    j.add_argument("parts", type=Path, nargs="+")
    j.add_argument("--out", type=Path, required=True)
    args, extra = parser.parse_known_args(argv)
    if args.command == "join":
        print(f"wrote {join(args.parts, args.out)}")
        return
    source = args.data if args.what == "faces" else args.cache
    if source is None:
        raise SystemExit(f"train --what {args.what} needs --{'data' if args.what == 'faces' else 'cache'}")
    parts = train(args.what, source, args.out, args.minutes, args.init, args.device, not args.no_amp, args.part_mb,
                  extra)
    print(f"wrote {len(parts)} parts: {', '.join(p.name for p in parts)}")


if __name__ == "__main__":
    main()
