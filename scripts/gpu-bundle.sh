#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine with no network into one folder
# (default gpu-bundle/, ignored by git), and checks that it and the repository fit in 64 MiB:
#   bin/tune-<build>.xz   stripped, xz-compressed binaries of the builds that exist
#                         (flex: target/release, cuda: target/cuda/release, tch: target/tch/release)
#   lib.tar.xz            shared libraries the binaries need besides glibc and libstdc++
#   data/                 the first 20,000 training images and the official test set, gzip IDX
#   cuda/nvvm/libdevice/  libdevice.10.bc, for a machine without a CUDA toolkit (LIBDEVICE=path)
#   reference.json        the flex build's figures on that data, recorded here
# Usage: scripts/gpu-bundle.sh [OUT_DIR]   (BUILDS, DATA_DIR, LIBDEVICE, TRAIN_IMAGES override)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-bundle}
data_src=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
images=${TRAIN_IMAGES:-20000}
limit=$((64 * 1024 * 1024))

rm -rf "$out" && mkdir -p "$out/bin"
declare -A builds=([flex]=target/release/tune [cuda]=target/cuda/release/tune [tch]=target/tch/release/tune)
# tch is left out by default: it needs libtorch 2.9 where it runs, which the GPU machine lacks
# (BUILDS="flex tch" packs it for a rehearsal on a machine that has PyTorch 2.9).
for build in ${BUILDS:-flex cuda}; do
  exe=${builds[$build]}
  [[ -x $exe ]] || { echo "no $build build at $exe: left out"; continue; }
  strip -o "$out/bin/tune-$build" "$exe"
  xz -9 -T0 "$out/bin/tune-$build"
  echo "$build: $(du -b "$exe" | cut -f1) bytes built, $(du -b "$out/bin/tune-$build.xz" | cut -f1) stripped and compressed"
done
# The shared libraries the binaries load besides glibc's and the compiler's (none for flex since
# charts use a built-in font), for a machine without them: gpu-check.sh uses them only where one
# is missing.
mkdir -p "$out/lib"
for build in ${BUILDS:-flex cuda}; do
  exe=${builds[$build]}
  [[ -x $exe ]] && ldd "$exe" | awk '/=> \// {print $3}'
done | sort -u | grep -vE '/(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+)\.so|/torch/lib/' | xargs -r cp -L -t "$out/lib"
tar -C "$out" -cJf "$out/lib.tar.xz" lib && rm -rf "$out/lib"
[[ -e $out/bin/tune-flex.xz ]] || { echo "the flex build (cargo build --release) is needed for the reference figures" >&2; exit 1; }

python3 scripts/idx_subset.py "$data_src" "$out/data" "$images"

libdevice=${LIBDEVICE:-}
if [[ -z $libdevice ]]; then
  libdevice=$(ls /usr/local/cuda/nvvm/libdevice/libdevice.10.bc /usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc 2>/dev/null | head -1 || true)
fi
if [[ -z $libdevice ]]; then
  # PyPI's nvcc wheel carries it; the wheel is only read here, never carried.
  wheels=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" nvidia-cuda-nvcc-cu12 >/dev/null
  python3 - "$wheels" "$out/cuda/nvvm/libdevice" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
os.makedirs(sys.argv[2], exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("libdevice.10.bc"))
    open(os.path.join(sys.argv[2], "libdevice.10.bc"), "wb").write(z.read(name))
PY
  rm -rf "$wheels"
else
  mkdir -p "$out/cuda/nvvm/libdevice" && cp "$libdevice" "$out/cuda/nvvm/libdevice/"
fi
xz -9 "$out/cuda/nvvm/libdevice/libdevice.10.bc"

# The reference: the flex build's 2-epoch run and bench on this data, the same commands
# gpu-check.sh runs on the GPU.
MODE=reference scripts/gpu-check.sh "$out" "$out/reference-run"
cp "$out/reference-run/gpu-check.json" "$out/reference.json"
rm -rf "$out/reference-run"

repo=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
bundle=$(du -sb "$out" | cut -f1)
total=$((repo + bundle))
echo "bundle $bundle bytes + repository $repo bytes = $total bytes (limit $limit)"
if ((total > limit)); then
  echo "too large for the GPU machine's 64 MiB: leave out a build or lower TRAIN_IMAGES" >&2
  exit 1
fi
