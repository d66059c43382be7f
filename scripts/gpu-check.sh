#!/usr/bin/env bash
# The prepared device check: one command, at most 10 minutes, on a machine with one NVIDIA GPU
# and no network, from the repository plus the bundle that scripts/gpu-bundle.sh packs.
# Without a GPU it is the rehearsal: the same steps on the CPU builds, the CUDA build only loaded.
#
# For each build in the bundle (flex, cuda, and tch when libtorch 2.9 loads): `tune bench`, then
# a 2-epoch `tune train` of the seed's network whose val_acc is compared with the flex build's,
# recorded beforehand on the same data (reference.json). Then a small study with 4 trials at
# once on one device. Writes OUT/gpu-check.json (the summary) and OUT/gpu-check.log.
#
# Usage: scripts/gpu-check.sh [BUNDLE (gpu-bundle)] [OUT ($OUT or gpu-check-out)]
# A second try that repeats only what failed: CHECK_BUILDS="cuda" (default: every build in the
# bundle) and CHECK_STUDY=0 (default 1).
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=$(realpath "${1:-gpu-bundle}")
out=$(realpath -m "${2:-${OUT:-gpu-check-out}}")
mode=${MODE:-check} # `reference`: record the flex build's figures only (gpu-bundle.sh)
tolerance=${TOLERANCE:-0.02} # |val_acc − the flex reference| after 2 epochs, another device's arithmetic
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=$bundle/data
start=$(date +%s)
results=()
failed=0

note() { printf '\n== %s (%ss)\n' "$*" "$(($(date +%s) - start))"; }
# A JSON string.
js() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

note "machine"
uname -srm
grep -m1 'model name' /proc/cpuinfo || true
echo "cores: $(nproc)"
gpu=0
if nvidia-smi -L >/dev/null 2>&1; then
  gpu=1
  nvidia-smi
else
  echo "no NVIDIA GPU here (nvidia-smi: $(command -v nvidia-smi || echo not found)): a CPU rehearsal"
fi
[[ $mode == reference ]] && gpu=0

# libdevice.10.bc: the machine's toolkit's, else the bundle's.
toolkit=${CUDA_PATH:-/usr/local/cuda}
if [[ ! -e $toolkit/nvvm/libdevice/libdevice.10.bc && -e $bundle/cuda/nvvm/libdevice/libdevice.10.bc.xz ]]; then
  mkdir -p "$work/cuda/nvvm/libdevice"
  xz -dc "$bundle/cuda/nvvm/libdevice/libdevice.10.bc.xz" >"$work/cuda/nvvm/libdevice/libdevice.10.bc"
  toolkit=$work/cuda
fi
export CUDA_PATH=$toolkit
if ((gpu)); then
  # Should the CUDA backend want NVRTC or another runtime library after all: the toolkit's and
  # PyTorch's pip-installed copies are on the library path (the driver's libcuda is in neither).
  extra=$(python3 -c 'import glob, os, site; print(":".join(d for p in site.getsitepackages() for d in glob.glob(os.path.join(p, "nvidia", "*", "lib"))))' 2>/dev/null || true)
  for d in "$toolkit/lib64" $(tr ':' ' ' <<<"$extra"); do
    [[ -d $d ]] && LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
  done
  export LD_LIBRARY_PATH
  echo "library path for the CUDA build: ${LD_LIBRARY_PATH:-none}"
fi
echo "libdevice: $CUDA_PATH/nvvm/libdevice/libdevice.10.bc"

builds=()
order=(flex tch cuda)
((gpu)) && order=(cuda tch flex) # the GPU's figures first, should time run short
# Every build is unpacked (the study may need one that CHECK_BUILDS leaves unchecked); the
# checked ones are listed in builds.
for b in "${order[@]}"; do
  [[ $mode == reference && $b != flex ]] && continue
  [[ -e $bundle/bin/tune-$b.xz ]] || continue
  xz -dc "$bundle/bin/tune-$b.xz" >"$work/tune-$b" && chmod +x "$work/tune-$b" || continue
  [[ -n ${CHECK_BUILDS:-} && " $CHECK_BUILDS " != *" $b "* ]] || builds+=("$b")
done
echo "builds: ${builds[*]}"
# Libraries this machine lacks come from the bundle.
if ldd "$work"/tune-* 2>/dev/null | grep -q 'not found' && [[ -e $bundle/lib.tar.xz ]]; then
  tar -C "$work" -xJf "$bundle/lib.tar.xz"
  export LD_LIBRARY_PATH=$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "libraries missing here are taken from the bundle: $(ls "$work/lib" | tr '\n' ' ')"
fi

reference_acc=""
if [[ -e $bundle/reference.json ]]; then
  reference_acc=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["builds"]["flex"]["val_acc"][-1])' "$bundle/reference.json")
  echo "the flex build's val_acc after 2 epochs, recorded beforehand: $reference_acc"
fi

# One build: load, bench, train 2 epochs, compare. Appends its JSON to results.
check_build() {
  local b=$1 exe=$work/tune-$1 status=ok reason="" images="null" accs="[]" secs="null" match="null"
  # Time limits that keep the whole check inside 10 minutes on a GPU machine (16 cores).
  local bench_limit=100 train_limit=150
  ((gpu)) && [[ $b != cuda ]] && { bench_limit=45; train_limit=90; }
  note "build $b"
  if [[ $b == tch ]] && ! "$exe" --version >/dev/null 2>&1; then
    # burn-tch 0.22 links libtorch 2.9, too large to carry: only a machine whose PyTorch is
    # 2.9 can run it (its libraries are found through python3's torch).
    local torch_lib torch_version
    torch_version=$(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)
    torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)
    if [[ $torch_version == 2.9.* && -n $torch_lib ]] && LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$exe" --version >/dev/null 2>&1; then
      export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      echo "libtorch from PyTorch $torch_version: $torch_lib"
    else
      results+=("\"$b\": {\"status\": \"skipped\", \"reason\": $(js "libtorch 2.9 does not load here (python3's PyTorch: $torch_version)")}")
      return
    fi
  fi
  if ! "$exe" --version; then
    results+=("\"$b\": {\"status\": \"fails to load\", \"reason\": $(js "$(ldd "$exe" 2>&1 | grep 'not found' | head -3)")}")
    failed=1
    return
  fi
  "$exe" model summary | tail -3
  if [[ $b == cuda && $gpu == 0 ]]; then
    results+=("\"$b\": {\"status\": \"loaded only\", \"reason\": \"no GPU on this machine\"}")
    return
  fi
  timeout "$bench_limit" "$exe" bench --data-dir "$data" --steps 20 --rounds 2 | tee "$work/bench-$b.txt"
  images=$(sed -n 's/^train: \([0-9.]*\) images\/s.*/\1/p' "$work/bench-$b.txt")
  [[ -n $images ]] || { images=null; status=failed; reason="tune bench gave no figure"; }
  local t0
  t0=$(date +%s.%N)
  if timeout "$train_limit" "$exe" train --data-dir "$data" --epochs 2 --patience 5 --seed 1 --out "$work/train-$b" --json >"$work/train-$b.jsonl"; then
    secs=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
    accs=$(python3 -c 'import json,sys; print(json.dumps([json.loads(l)["val_acc"] for l in open(sys.argv[1]) if l.startswith("{")]))' "$work/train-$b.jsonl")
    echo "val_acc by epoch: $accs in $secs s"
    if [[ -n $reference_acc ]]; then
      match=$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); print("true" if a and abs(a[-1]-float(sys.argv[2])) <= float(sys.argv[3]) else "false")' "$accs" "$reference_acc" "$tolerance")
      echo "within $tolerance of the flex build's $reference_acc: $match"
      [[ $match == true ]] || { status=failed; reason="val_acc differs from the flex build's by more than $tolerance"; }
    fi
  else
    status=failed
    reason="tune train failed: $(tail -3 "$work/train-$b.jsonl" | tr '\n' ' ')"
  fi
  [[ $status == ok ]] || failed=1
  results+=("\"$b\": {\"status\": \"$status\", \"reason\": $(js "$reason"), \"bench_train_images_per_s\": $images, \"val_acc\": $accs, \"train_secs\": $secs, \"matches_reference\": $match}")
}

# The summary, rewritten after every step so that a check stopped at its time limit still
# leaves what it measured.
summary() {
  {
    echo "{"
    echo "  \"mode\": \"$mode\", \"gpu\": $( ((gpu)) && echo true || echo false), \"secs\": $(($(date +%s) - start)), \"finished\": $1, \"passed\": $([[ $failed == 0 && $1 == true ]] && echo true || echo false),"
    echo "  \"gpu_name\": $(js "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"),"
    echo "  \"builds\": {$(IFS=,; echo "${results[*]}")},"
    echo "  \"study\": $study"
    echo "}"
  } | python3 -m json.tool >"$out/gpu-check.json.part" && mv "$out/gpu-check.json.part" "$out/gpu-check.json"
}

study="null"
for b in "${builds[@]}"; do check_build "$b"; summary false; done

if [[ $mode != reference && ${CHECK_STUDY:-1} != 0 ]]; then
  # 4 trials at once on one device: the GPU with the cuda build, else the CPU with flex.
  if [[ $gpu == 1 && -x $work/tune-cuda ]]; then exe=$work/tune-cuda device=cuda:0; else exe=$work/tune-flex device=cpu; fi
  note "study: 8 trials, 4 at once on $device"
  threads=$(($(nproc) / 4))
  ((threads > 0)) || threads=1
  if ((gpu)); then
    # Which processes hold GPU memory while the study runs: 4 trial processes at once, each
    # on the device it was given.
    (while sleep 3; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader >>"$work/gpu-apps.txt" 2>&1; echo -- >>"$work/gpu-apps.txt"; done) &
    sampler=$!
  fi
  timeout 150 "$exe" run search_spaces/quick.toml --runs-dir "$work/runs" --data-dir "$data" --trials 8 \
    --max-epochs 2 --subset 2000 --devices "$device" --trials-per-device 4 --threads "$threads"
  rc=$?
  gpu_apps=null
  if ((gpu)); then
    kill "$sampler" 2>/dev/null
    gpu_apps=$(awk '/^--/ {if (n > m) m = n; n = 0; next} /,/ {n++} END {print m + 0}' "$work/gpu-apps.txt")
    echo "at most $gpu_apps processes held GPU memory at once"
    tail -12 "$work/gpu-apps.txt"
  fi
  "$exe" report "$work/runs/quick" >"$work/report-full.txt"
  head -1 "$work/report-full.txt" | tee "$work/report.txt"
  peak=$(python3 - "$work/runs/quick/journal.jsonl" <<'PY'
import json, sys
running = peak = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("event") == "created" and not e.get("infeasible"):
        running += 1
        peak = max(peak, running)
    elif e.get("event") == "finished":
        running -= 1
print(peak)
PY
)
  echo "exit $rc; at most $peak trials ran at once"
  [[ $rc == 0 && $peak == 4 ]] || failed=1
  study="{\"device\": \"$device\", \"exit\": $rc, \"peak_running\": $peak, \"peak_gpu_processes\": $gpu_apps, \"report\": $(js "$(cat "$work/report.txt")")}"
fi

note "done"
summary true
cat "$out/gpu-check.json"
exit $failed
