#!/usr/bin/env bash
# Wall time of the README's two set-up commands on a fresh clone, as a new user runs them.
# Usage: bash benchmarks/readme_commands.sh [WORKDIR]   (default: a new temporary folder)
# Prints one line per command; the demo's own table is in WORKDIR/viewfinder/viewfinder-demo/.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
git clone --quiet "$repo" "$work/viewfinder"
cd "$work/viewfinder"
for target in demo test; do
  start=$(date +%s)
  make "$target" > "$work/make-$target.log" 2>&1
  echo "make $target: $(( $(date +%s) - start )) s (log: $work/make-$target.log)"
done
