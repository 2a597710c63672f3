#!/usr/bin/env bash
# Install mmcv 2.1.0 *with* its compiled ops into the active Python.
#   WHEELHOUSE=DIR  take a prebuilt wheel from DIR (no build, seconds);
#   otherwise       build the registry's sdist (~25 min on 2 cores), with the
#                   two fixes torch 2.14 needs: setuptools<82 for
#                   pkg_resources, and -std=c++20 instead of the hard-coded
#                   -std=c++17 (torch 2.14's headers refuse C++17).
# CUDA ops are built as mmcv decides (a visible GPU, or FORCE_CUDA=1).
set -euo pipefail
PYTHON=${PYTHON:-python}
VERSION=2.1.0

if "$PYTHON" - <<PY 2>/dev/null; then
import importlib.util, mmcv, sys
sys.exit(0 if mmcv.__version__ == '$VERSION' and importlib.util.find_spec('mmcv._ext') else 1)
PY
  echo "mmcv $VERSION with ops already installed"
  exit 0
fi

if [ -n "${WHEELHOUSE:-}" ]; then
  echo "installing mmcv $VERSION from wheelhouse $WHEELHOUSE"
  # Its dependencies come with requirements/runtime.txt (make install).
  "$PYTHON" -m pip install --no-index --find-links "$WHEELHOUSE" --no-deps "mmcv==$VERSION"
  exit 0
fi

echo "building mmcv $VERSION with ops from the sdist (about 25 minutes on 2 cores)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m pip download --no-deps --no-binary :all: --no-build-isolation -d "$tmp" "mmcv==$VERSION"
tar xzf "$tmp/mmcv-$VERSION.tar.gz" -C "$tmp"
sed -i "s/'-std=c++17'/'-std=c++20'/g" "$tmp/mmcv-$VERSION/setup.py"
MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} \
  "$PYTHON" -m pip install --no-build-isolation "$tmp/mmcv-$VERSION"
