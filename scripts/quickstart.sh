#!/usr/bin/env bash
# genrt from a fresh clone, with nothing but python3: a virtual environment in .venv (created if missing), the
# runtime installed into it (numpy, onnxruntime, pillow, click, tqdm: no torch), 16 faces written to out/faces/
# and a poem printed, both from the bundled models. Run it from anywhere: bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    if ! python3 -m venv .venv; then
        echo "quickstart: python3 cannot create a virtual environment; on Debian/Ubuntu: sudo apt install python3-venv" >&2
        exit 1
    fi
fi
if [ ! -x .venv/bin/genrt ]; then          # (not `import genrt`: from the checkout that finds the source folder)
    .venv/bin/python -m pip install -q .
fi

.venv/bin/genrt faces --n 16 -o out/faces --overwrite
.venv/bin/genrt poem 春江花月夜
echo "next: . .venv/bin/activate && genrt --help"
