"""Bounds on work and memory that grow with an argument's *value* (not an array's shape).

An array's shape is the caller's own choice of memory; a value such as a knapsack
capacity or a grid size is not visibly one, and ``capacity=10**9`` would start a
multi-gigabyte allocation. Every such op states its table size up front and refuses,
with a ``ValueError`` naming the argument and the alternative, beyond these bounds.
"""

from __future__ import annotations

__all__ = [
    "MAX_GRID_NODES",
    "MAX_HELD_KARP_CELLS",
    "MAX_KNAPSACK_CELLS",
    "check_grid_size",
    "check_size",
]

#: ``n · (C + 1)`` entries of the knapsack dynamic program per instance (32 MiB of
#: decisions): e.g. 1000 items with capacity 33 553.
MAX_KNAPSACK_CELLS = 2**25

#: ``H · W`` nodes of a grid whose tables are built from a ``grid=(H, W)`` value.
MAX_GRID_NODES = 2**22


def check_size(size: int, *, limit: int, name: str, what: str, alternative: str) -> None:
    """Raise ``ValueError`` when ``size`` (the work that argument ``name`` asks for)
    exceeds ``limit``.

    Example
    -------
    >>> check_size(10, limit=100, name="capacity", what="the table", alternative="use milp")
    >>> check_size(1000, limit=100, name="capacity", what="the table", alternative="use milp")
    Traceback (most recent call last):
    ...
    ValueError: capacity: the table needs 1,000 entries, more than the 100 allowed; use milp
    """
    if size > limit:
        raise ValueError(
            f"{name}: {what} needs {size:,} entries, more than the {limit:,} allowed; {alternative}"
        )


def check_grid_size(h: int, w: int) -> None:
    """``H·W <= MAX_GRID_NODES`` for an ``(H, W)`` grid given as a value: its tables
    (``O(H·W)`` memory, built in Python) are sized by ``grid``, not by an array's shape."""
    check_size(
        h * w,
        limit=MAX_GRID_NODES,
        name="grid",
        what=f"a {h}×{w} grid (H·W nodes)",
        alternative="split the problem or pick a smaller grid",
    )


#: ``2**(n-1) · (n-1)**2`` entries per instance of the Held-Karp dynamic program for a
#: tour of ``n`` nodes (its back-pointer table and its largest transient layer are
#: bounded by this): ``n <= 15``.
MAX_HELD_KARP_CELLS = 2**22
