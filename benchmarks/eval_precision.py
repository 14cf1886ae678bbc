"""One trained run evaluated with float32 and with bfloat16 matrix products (seqimpute.precision): the scores side
by side, and the CPU time of each. Decides whether evaluation and imputation may run in bf16 (within 0.2%).

    OMP_NUM_THREADS=1 python benchmarks/eval_precision.py RUN [CHECKPOINT N SAMPLES OUT.json]
"""

import json
import sys
import time

from seqimpute.data.sources import load_dataset
from seqimpute.evaluate import evaluate
from seqimpute.numerics import flush_subnormals
from seqimpute.runs import load_run_model, training_record


def main():
    flush_subnormals()
    run = sys.argv[1]
    ck, n, samples = (sys.argv[2], int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else ("last", 500, 10)
    model, cfg, checkpoint = load_run_model(run, ck)
    data = load_dataset(cfg["train"]["data"], "test", **cfg["train"].get("data_options", {}))
    out = {"run": run, "checkpoint": ck, "n": n, "samples": samples, "mask": cfg["train"]["mask"],
           "training": training_record(run, cfg, checkpoint)}
    for p in ("fp32", "bf16"):
        t = time.process_time()
        res = evaluate(model, data, cfg["train"]["mask"], samples=samples, n=n, seed=0, precision=p)
        out[p] = {k: v for k, v in res.items() if isinstance(v, (int, float))}
        out[p]["cpu_s"] = time.process_time() - t
    for k, a in out["fp32"].items():
        b = out["bf16"].get(k)
        if isinstance(a, float) and b is not None and a:
            print(f"{k:40s} fp32 {a:12.4f} bf16 {b:12.4f} rel {(b - a) / abs(a):+.5f}")
    if len(sys.argv) > 5:
        with open(sys.argv[5], "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
