# Sourced by gen-ptx and ci-check: puts the pinned PyPI CUDA toolchain (nvcc, cicc, ptxas,
# headers) on PATH, installing it once into a cache directory.
#
# The pins are exact: unpinned, pip mixes versions and the PTX is rejected. The wheels unpack
# into one tree, site-packages/nvidia/cu13/{bin/nvcc,bin/ptxas,nvvm/bin/cicc,include}, whose
# bin/nvcc.profile finds cicc and the headers relative to itself, so nothing else needs setting.
CUDA_PIP_PINS="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.88 nvidia-cuda-cccl==13.0.85"

halfscale_cuda_toolchain() {
  local root="$1"
  local cache="${HALFSCALE_CUDA_CACHE:-$root/.cache/cuda-toolchain}"
  local stamp="$cache/venv/.pins"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$CUDA_PIP_PINS" ]; then
    echo "gpu-shim: installing the CUDA toolchain into $cache (one time)" >&2
    rm -rf "$cache/venv"
    mkdir -p "$cache"
    python3 -m venv "$cache/venv"
    # shellcheck disable=SC2086
    "$cache/venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir $CUDA_PIP_PINS >&2
    echo "$CUDA_PIP_PINS" > "$stamp"
  fi
  CUDA_TOOLKIT="$(echo "$cache"/venv/lib/python3*/site-packages/nvidia/cu13)"
  if [ ! -x "$CUDA_TOOLKIT/bin/nvcc" ] || [ ! -x "$CUDA_TOOLKIT/nvvm/bin/cicc" ] || [ ! -x "$CUDA_TOOLKIT/bin/ptxas" ]; then
    echo "gpu-shim: $CUDA_TOOLKIT lacks nvcc, cicc or ptxas; remove $cache and retry" >&2
    return 1
  fi
  export CUDA_TOOLKIT
  export PATH="$CUDA_TOOLKIT/bin:$CUDA_TOOLKIT/nvvm/bin:$PATH"
}
