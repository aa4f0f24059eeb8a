#!/usr/bin/env bash
# Every benchmark's JSON in one go, for the machine it runs on (a lent GPU machine or this CPU):
#
#     bash benchmarks/run_all.sh [OUT_DIR]          (PYTHON=path/to/python, DEVICE=cpu|cuda to override)
#
# Writes OUT_DIR/<name>.json (stdout of each script) and OUT_DIR/<name>.log (its stderr); a benchmark that fails
# is listed at the end and the others still run. OUT_DIR defaults to benchmarks/results/<device>. Needs the test
# environment (torch, bpy for the Blender benchmarks) and ../shared for the held-out paths of bench_control.
set -uo pipefail
cd "$(dirname "$0")/.."

py="${PYTHON:-python3}"
device="${DEVICE:-$("$py" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"
out="${1:-benchmarks/results/$device}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
failed=()

run() {
    local name="$1"; shift
    echo "== $name: $*" >&2
    local start=$SECONDS
    if "$py" "$@" > "$out/$name.json.part" 2> "$out/$name.log"; then
        mv "$out/$name.json.part" "$out/$name.json"
        echo "   done in $((SECONDS - start)) s" >&2
    else
        rm -f "$out/$name.json.part"
        failed+=("$name")
        echo "   FAILED (see $out/$name.log)" >&2
    fi
}

# Engine: official-size random weights and the shipped model; batch 1 and 32 are both in each report.
run engine_official_size benchmarks/bench_engine.py --device "$device"
run engine_default_model benchmarks/bench_engine.py --device "$device" --checkpoint backend/default_model
if [ "$device" = cuda ]; then
    run engine_official_size_fp16 benchmarks/bench_engine.py --device cuda --dtype fp16
    run engine_official_size_bf16 benchmarks/bench_engine.py --device cuda --dtype bf16
    run engine_official_size_compile benchmarks/bench_engine.py --device cuda --compile
    run train_official_batches benchmarks/bench_train.py --model official --batch-size 128 --device cuda --steps 20
else
    run train_tiny benchmarks/bench_train.py --model tiny --batch-size 8 --steps 5 --device cpu
fi
run cold_start benchmarks/bench_cold_start.py
run control benchmarks/bench_control.py --device "$device"
run timeline benchmarks/bench_timeline.py
run ar benchmarks/bench_ar.py --device "$device"
run profile_engine benchmarks/profile_engine.py
run retarget benchmarks/bench_retarget.py
run bake benchmarks/bench_bake.py
run click_to_keys benchmarks/bench_click.py --device "$device"

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
echo "all benchmarks written to $out" >&2
