#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install what is missing.
#
# Idempotent: a stamp keyed by setup.py and this script makes a second run take seconds.
# mmcv 2.1.0 (needed by mmsegmentation 1.2.2, with compiled ops) ships only as a source package
# whose build needs C++20 on current PyTorch; the wheel is built once per machine and cached
# under ${LITEVIT_CACHE:-~/.cache/litevit}, keyed by the Python and torch versions.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LITEVIT_VENV:-$root/.venv}"
cache="${LITEVIT_CACHE:-$HOME/.cache/litevit}"
py="${PYTHON:-python3}"
say() { echo "[bootstrap] $*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment at $venv"
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"
pipq() { "$vpy" -m pip install --disable-pip-version-check -q "$@"; }

stamp="$venv/.litevit-stamp"
want="$(cat "$root/setup.py" "$root/tools/bootstrap.sh" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && "$vpy" -c "import torch, mmcv.ops, mmseg, backbones" 2>/dev/null; then
  exit 0
fi

if ! "$vpy" -c "import torch, torchvision" 2>/dev/null; then
  say "installing torch 2.14.1 + torchvision 0.29.1"
  pipq "torch==2.14.1" "torchvision==0.29.1"
fi
# setuptools < 82 still ships pkg_resources, which mmcv's setup.py imports; >= 77 for torch.
pipq "setuptools>=77,<82" wheel ninja packaging

if ! "$vpy" -c "import mmcv.ops" 2>/dev/null; then
  key="$("$vpy" -c 'import sys, torch; v = torch.__version__.split("+")[0]; print("py%d%d-torch%s" % (sys.version_info[0], sys.version_info[1], v))')"
  wheeldir="$cache/wheels/mmcv-2.1.0-$key"
  whl="$(ls "$wheeldir"/mmcv-2.1.0-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$whl" ]; then
    say "building mmcv 2.1.0 with compiled ops for $key (once per machine, ~11 min on 2 cores)"
    build="$(mktemp -d)"
    trap 'rm -rf "$build"' EXIT
    "$vpy" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
      "mmcv==2.1.0" -d "$build" \
      || { say "ERROR: could not download the mmcv 2.1.0 source package from PyPI"; exit 1; }
    tar -xzf "$build"/mmcv-2.1.0.tar.gz -C "$build"
    # PyTorch >= 2.10 headers require C++20; mmcv 2.1.0 hard-codes C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-2.1.0/setup.py"
    mkdir -p "$wheeldir"
    if ! (cd "$build/mmcv-2.1.0" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="$(nproc)" \
          "$vpy" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps \
          -w "$wheeldir" . >"$build/build.log" 2>&1); then
      tail -n 40 "$build/build.log" >&2
      say "ERROR: building mmcv 2.1.0 failed (log above). It needs gcc/g++ with C++20 support and"
      say "       the Python headers (Debian: apt-get install build-essential python3-dev)."
      exit 1
    fi
    whl="$(ls "$wheeldir"/mmcv-2.1.0-*.whl | head -n1)"
    say "cached $whl"
  fi
  pipq --no-deps "$whl"
fi

say "installing the project and its dependencies"
pipq -e "$root[dev,seg]"
"$vpy" -c "import torch, mmcv.ops, mmseg, backbones" \
  || { say "ERROR: the environment is incomplete after installation"; exit 1; }
echo "$want" > "$stamp"
