#!/usr/bin/env bash
# The speed figures that need an idle machine, in one go (about 10 minutes on the 2-core CPU), written to
# results/speed/<stamp>/. Run it when nothing else is running: `bash benchmarks/quiet_suite.sh`; then copy the
# numbers into benchmarks/RESULTS.md with the stamp. THREADS=1 measures single-threaded.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${THREADS:-2}
out=results/speed/$(date -u +%Y%m%dT%H%MZ)-${T}t
mkdir -p "$out"
export OMP_NUM_THREADS=$T
uptime | tee "$out/load_before.txt"
seqimpute bench --model gpsi-add --json "$out/bench-gpsi-add.json" | tee "$out/bench-gpsi-add.txt"
python benchmarks/gpsi_reference.py --threads "$T" --rounds 5 --updates 3 --json "$out/gpsi-reference.json" \
    | tee "$out/gpsi-reference.txt"
python benchmarks/train_vs_bench.py --model gpsi-add --rounds 2 --updates 24 --json "$out/train-vs-bench.json" \
    | tee "$out/train-vs-bench.txt"
seqimpute bench --sweep T --steps 3 --warmup 1 --json "$out/sweep-T.json" | tee "$out/sweep-T.txt"
seqimpute bench --all --steps 3 --warmup 1 --json "$out/all.json" | tee "$out/all.txt"
python benchmarks/baselines.py --time-only --out "$out/tm" | tail -5 | tee "$out/tm.txt"
uptime | tee "$out/load_after.txt"
