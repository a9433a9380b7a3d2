#!/usr/bin/env bash
# Build the demo dataset with the DirectRunner into a new folder under out/.
# Extra arguments go to `medvision-pipeline build` (e.g. --spacing 1.0, or Beam's
# --direct_num_workers=2 --direct_running_mode=multi_processing).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
output="out/demo-$(date -u +%Y%m%dT%H%M%SZ)"
.venv/bin/medvision-pipeline build --source demo --output "$output" "$@"
