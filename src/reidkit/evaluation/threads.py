"""A scoped single intra-op thread for small tensor work.

Bookkeeping on arrays of ~1e5 elements (ranking candidates, sparse graph edges, 384 x 384 inverses)
gains nothing from OpenMP fan-out, and on a busy machine every parallel region can stall for
milliseconds waiting for a descheduled worker (measured on 2 shared cores: a 60k-element sort
0.55 s on 2 threads vs 2 ms on 1). The caller's thread count is restored on exit; large GEMMs stay
outside these blocks and keep all threads.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def one_blas_thread():
    """numpy's BLAS (OpenBLAS) on one thread, for workers that each run their own GEMM, where
    threadpoolctl exists (declared in pyproject; the fallback serves checkouts run without installing,
    where workers then oversubscribe the cores: slower, same results)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")
