#!/usr/bin/env bash
# Prepares `cargo build --release --features cuda` on a machine that cannot reach GitHub.
#
# burn's CUDA backend needs cubecl-llvm, whose build dependency (tracel-llvm-bundler)
# downloads an LLVM 23 bundle from GitHub unless its marker file exists. Debian's LLVM 22
# stands in: this script installs it, writes the marker and an `llvm-config` wrapper that
# drops Polly (not shipped as static libraries) and names z3 as `-lz3`.
#
# A real bundle (one that has its own bin/llvm-config) is never touched.
# Usage: scripts/cuda-prereqs.sh          (as root, or with sudo for apt-get)
set -euo pipefail

LLVM_MAJOR=${LLVM_MAJOR:-22}
BUNDLE_VERSION=23.1.0-4 # tracel-llvm-bundler's version in Cargo.lock
data_home=${XDG_DATA_HOME:-$HOME/.local/share}
bundle=$data_home/tracel/tracel-llvm-$BUNDLE_VERSION
system_config=/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-config

locked=$(grep -A1 'name = "tracel-llvm-bundler"' "$(dirname "$0")/../Cargo.lock" 2>/dev/null |
  sed -n 's/^version = "\(.*\)"/\1/p' || true)
if [[ -n $locked && $locked != "$BUNDLE_VERSION" ]]; then
  echo "Cargo.lock pins tracel-llvm-bundler $locked, this script knows $BUNDLE_VERSION:" >&2
  echo "set BUNDLE_VERSION in $0 to $locked" >&2
  exit 2
fi

if [[ ! -x $system_config ]]; then
  sudo_=""
  [[ $(id -u) -ne 0 ]] && sudo_=sudo
  $sudo_ apt-get install -y --no-install-recommends "llvm-$LLVM_MAJOR-dev" libz3-dev \
    libzstd-dev zlib1g-dev libxml2-dev libffi-dev libedit-dev libncurses-dev clang
fi

if [[ -e $bundle/bin/llvm-config && ! -e $bundle/.tune-llvm-stand-in ]]; then
  echo "a real LLVM bundle is already at $bundle: nothing to do"
  exit 0
fi

mkdir -p "$bundle/bin"
cat >"$bundle/bin/llvm-config" <<WRAPPER
#!/usr/bin/env bash
# Debian's LLVM $LLVM_MAJOR standing in for tracel's bundle (written by tune's scripts/cuda-prereqs.sh).
out=\$($system_config "\$@") || exit \$?
out=\$(sed -e 's/ *-lPolly\(ISL\)\?\b//g' -e 's#[^ ]*/libz3\.so[^ ]*#-lz3#g' <<<"\$out")
printf '%s\n' "\$out"
WRAPPER
chmod +x "$bundle/bin/llvm-config"
touch "$bundle/.tune-llvm-stand-in" "$bundle/.tracel-llvm-installed"
echo "LLVM $("$bundle/bin/llvm-config" --version) stands in for tracel-llvm $BUNDLE_VERSION at $bundle"
echo "now: cargo build --release --features cuda --target-dir target/cuda"
