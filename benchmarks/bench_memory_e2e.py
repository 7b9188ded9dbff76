"""The memory end to end at 1M-10M tokens: the same as `longrecall memory bench` (src/longrecall/memory/bench.py).

    OMP_NUM_THREADS=1 python benchmarks/bench_memory_e2e.py --sizes 1000000:50,10000000:10 \\
        --rows retrieval:auto,retrieval:topk,base:topk:10,tuned:topk:10,tuned:auto,reader:auto --tuned runs/cpu/train/adapter \\
        --output-dir docs/results/memory
"""
import argparse
import sys

from longrecall.errors import UserError
from longrecall.memory import bench

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=bench.__doc__.splitlines()[0])
    bench.add_arguments(ap)
    try:
        sys.exit(bench.main(ap.parse_args()))
    except UserError as e:
        sys.exit(f"error: {e}")
