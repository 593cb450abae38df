#!/usr/bin/env bash
# Build (or reuse) the project's virtual environment, then optionally run a command inside it.
#
#   bash tools/setup_env.sh                          # set up only
#   bash tools/setup_env.sh python -m pytest tests   # set up, then run the tests in the venv
#
# Environment variables:
#   PARTIALNET_VENV       where the venv lives            (default: <project>/.venv)
#   PARTIALNET_PYTHON     interpreter that creates it     (default: python3.11, else python3)
#   PARTIALNET_CACHE      where built mmcv wheels are kept (default: ~/.cache/partialnet-mm)
#   TORCH_VERSION / TORCHVISION_VERSION   the torch pair  (default: 2.14.1 / 0.29.1)
#   MMCV_VERSION          mmcv to build from its sdist     (default: 2.1.0)
#   PARTIALNET_DEPLOY     1: also the deploy extra, mmdeploy (default: 1; 0 skips it)
#   PARTIALNET_PEERS      1: also timm for the benchmark's FasterNet peers (default: 1)
#
# Why the stack is what it is: see README.md, section "The stack".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PARTIALNET_VENV:-$ROOT/.venv}"
CACHE="${PARTIALNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/partialnet-mm}"
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
MMCV_VERSION="${MMCV_VERSION:-2.1.0}"
OPENMIM_VERSION="${OPENMIM_VERSION:-0.3.9}"
# Everything except torch/torchvision/mmcv, pinned to the versions shown to work together.
STACK=(
  "mmengine==0.10.7"
  "mmdet==3.3.0"
  "mmsegmentation==1.2.2" "ftfy" "regex"
  "mmpretrain==1.2.0"
  "pycocotools"
  "pytest" "pytest-xdist" "onnx" "onnxruntime"
)

say() { printf '[setup_env] %s\n' "$*" >&2; }
t_start=$(date +%s)

pick_python() {
  if [ -n "${PARTIALNET_PYTHON:-}" ]; then echo "$PARTIALNET_PYTHON"; return; fi
  for p in python3.11 python3; do
    if command -v "$p" >/dev/null 2>&1; then echo "$p"; return; fi
  done
  say "no python3 found; set PARTIALNET_PYTHON"; exit 1
}

# ---------------------------------------------------------------- venv
if [ ! -x "$VENV/bin/python" ]; then
  PY="$(pick_python)"
  say "creating virtual environment $VENV with $($PY --version 2>&1)"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
# pip, minus the machine-wide config's warnings about local index folders it cannot use.
pip_quiet() {
  "$VPY" -m pip --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2)
}
pip_install() { pip_quiet install -q "$@"; }

# Installed version of a distribution in the venv, or empty.
installed() {
  "$VPY" - "$1" <<'EOF' 2>/dev/null || true
import sys
from importlib.metadata import version
print(version(sys.argv[1]))
EOF
}

# ---------------------------------------------------------------- torch pair
# Installed first and alone: everything after it must build against / resolve to this torch.
if [ "$(installed torch)" != "$TORCH_VERSION" ] || [ "$(installed torchvision)" != "$TORCHVISION_VERSION" ]; then
  say "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (from the local disk where available)"
  pip_install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi
# Build tooling for mmcv: its setup.py imports pkg_resources (gone in setuptools>=81) and
# torch wants setuptools>=77.
pip_install "setuptools>=77,<81" wheel ninja

# ---------------------------------------------------------------- mmcv (C++ ops), cached per torch
if [ "$(installed mmcv)" != "$MMCV_VERSION" ] || ! "$VPY" -c "import mmcv.ops" >/dev/null 2>&1; then
  PYTAG="$("$VPY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
  WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION/torch-$TORCH_VERSION-$PYTAG-$(uname -m)"
  WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
  if [ -z "$WHEEL" ]; then
    say "WARNING: no cached mmcv $MMCV_VERSION wheel for torch $TORCH_VERSION ($PYTAG)."
    say "WARNING: building mmcv from source with its C++ ops: about 9 minutes on 2 cores."
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    # torch>=2.14 headers need C++20; mmcv's setup.py asks for -std=c++14/17. Rewrite the flag.
    mkdir -p "$BUILD/bin"
    cat >"$BUILD/bin/cxx20" <<'EOF'
#!/usr/bin/env bash
args=()
for a in "$@"; do
  case "$a" in -std=c++1[147]|-std=gnu++1[147]) a=-std=c++20 ;; esac
  args+=("$a")
done
exec "${PARTIALNET_REAL_CXX:-g++}" "${args[@]}"
EOF
    chmod +x "$BUILD/bin/cxx20"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" CXX="$BUILD/bin/cxx20" \
      pip_quiet wheel --no-deps --no-build-isolation \
      --no-binary mmcv -w "$BUILD/wheels" "mmcv==$MMCV_VERSION"
    mkdir -p "$WHEEL_DIR"
    cp "$BUILD"/wheels/mmcv-*.whl "$WHEEL_DIR"/
    WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)"
    say "cached $WHEEL"
  else
    say "reusing cached $WHEEL"
  fi
  pip_install --force-reinstall --no-deps "$WHEEL"
fi

# ---------------------------------------------------------------- the rest of the stack
say "installing the OpenMMLab stack and partialnet_mm (editable)"
# mmcv's own requirements, then the pinned stack; torch stays as installed (the constraint file
# below forbids pip from replacing it).
CONSTRAINTS="$(mktemp)"
printf 'torch==%s\ntorchvision==%s\nmmcv==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" "$MMCV_VERSION" >"$CONSTRAINTS"
pip_install -c "$CONSTRAINTS" "${STACK[@]}" addict packaging pillow pyyaml yapf opencv-python
# openmim (OpenMMLab's `mim train/test/run`) without its opendatalab dependency, whose
# openxlab pins setuptools 60.2 and would downgrade the build tools mmcv is built with; mim's
# commands import neither (only `mim download --dataset` runs opendatalab's `odl`).
pip_install -c "$CONSTRAINTS" --no-deps "openmim==$OPENMIM_VERSION"
pip_install -c "$CONSTRAINTS" Click colorama model-index pandas requests rich tabulate

# partialnet_mm itself, editable, in the develop layout: its metadata (partialnet_mm.egg-info)
# in the checkout and the checkout on sys.path through a .pth file, the configs, tools and
# model index linked into partialnet_mm/.mim. mim looks for a codebase's tools in
# <where its metadata is>/<package>/.mim; after a PEP 660 `pip install -e .` that is
# site-packages, where the package is not.
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if ls "$SITE"/partialnet_mm-*.dist-info >/dev/null 2>&1; then
  pip_quiet uninstall -y -q partialnet-mm  # a PEP 660 or wheel install: one copy only
fi
(cd "$ROOT" && "$VPY" setup.py -q egg_info mim_links 2>/dev/null)
echo "$ROOT" >"$SITE/partialnet_mm-checkout.pth"
rm -f "$CONSTRAINTS"

# ---------------------------------------------------------------- deploy extra: mmdeploy
# On by default so that CI runs the export tests (tests/test_mmdeploy.py). Everything with
# --no-deps, so nothing of the stack moves: mmdeploy 1.3.1's metadata asks for
# protobuf<=3.20.2, for which pip would take onnx back to 1.17 (requirements/deploy.txt).
if [ "${PARTIALNET_DEPLOY:-1}" = 1 ]; then
  say "installing the deploy extra: mmdeploy 1.3.1 and what it imports (--no-deps)"
  pip_install --no-deps -r "$ROOT/requirements/deploy.txt" "mmdeploy==1.3.1"
  "$VPY" -c "import mmdeploy.apis; print('[setup_env] mmdeploy', mmdeploy.__version__)"
fi

# ---------------------------------------------------------------- peers extra: timm
# timm's FasterNet is a peer in tools/benchmark.py --peers (tests/test_peers.py); --no-deps,
# as timm would otherwise ask for a torch of its own choosing.
if [ "${PARTIALNET_PEERS:-1}" = 1 ]; then
  pip_install --no-deps "timm==1.0.31"
fi

"$VPY" - <<'EOF'
import torch, torchvision, mmcv, mmcv.ops, mmengine, mmdet, mmseg, mmpretrain, mim, partialnet_mm
print('[setup_env] ready: torch %s, torchvision %s, mmcv %s, mmengine %s, mmdet %s, mmseg %s, '
      'mmpretrain %s, partialnet_mm %s' % (torch.__version__, torchvision.__version__,
      mmcv.__version__, mmengine.__version__, mmdet.__version__, mmseg.__version__,
      mmpretrain.__version__, partialnet_mm.__version__))
EOF
say "environment ready in $(( $(date +%s) - t_start )) s: $VENV"

# ---------------------------------------------------------------- run the given command inside it
if [ "$#" -gt 0 ]; then
  export VIRTUAL_ENV="$VENV"
  export PATH="$VENV/bin:$PATH"
  cd "$ROOT"
  exec "$@"
fi
