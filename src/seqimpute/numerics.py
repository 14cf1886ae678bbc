"""The CPU's handling of subnormal floats while seqimpute trains and imputes.

Weights of units that stop receiving gradient decay under the L2 penalty into the subnormal range (|x| < 1.2e-38),
and x86 CPUs handle subnormal operands in microcode: a 250x1000x784 product with 20% subnormal weights ran 200x
slower on this project's CPU, and GPSI-add training slowed by 1.7x once its writer's weights got there (about
1,600 updates into a run; benchmarks/RESULTS.md, section I). Flushing them to zero (FTZ/DAZ, what TensorFlow does
by default) changes values only below 1.2e-38.
"""

from __future__ import annotations

import contextlib

import torch


def subnormals_are_flushed() -> bool:
    """Whether this thread treats subnormal floats as zero (probed: a subnormal survives a multiplication only when
    they are not flushed)."""
    return float(torch.full((1,), 2e-38) * 0.25) == 0.0


def flush_subnormals() -> bool:
    """Flush subnormal floats to zero on this thread from now on. Threads started later inherit the mode, so a
    process should call it before torch starts its thread pool (the CLI does, first thing). Returns whether the
    CPU supports it."""
    return torch.set_flush_denormal(True)


@contextlib.contextmanager
def subnormals_flushed():
    """Flush subnormals for a block and restore this thread's mode after it (library calls: train, evaluate, the
    imputer). Threads of a pool that already runs keep their own mode."""
    before = subnormals_are_flushed()
    flush_subnormals()
    try:
        yield
    finally:
        if not before:
            torch.set_flush_denormal(False)
