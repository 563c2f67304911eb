"""Process set-up for the jobs that run networks."""

from __future__ import annotations

import os


def use_huge_pages() -> None:
    """Let PyTorch's CPU allocator use transparent huge pages.

    Dense inference of a 1 mm volume spends much of its time in page faults
    otherwise (bench/inference.py --huge-pages: about 40% faster on 2 cores).
    PyTorch reads the variable at its first allocation, so call this before any
    tensor exists; a value the user set is kept.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
