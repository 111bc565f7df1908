"""Helpers shared by the model families."""


def scaled(channels: int, width: float) -> int:
    """Channels after applying a width multiplier; never below one."""
    return max(1, int(round(channels * width)))


def pooled_size(size: int, n_pools: int) -> int:
    """Spatial size after n 2x2 max-pools (floor), as torch computes it."""
    for _ in range(n_pools):
        size //= 2
    if size < 1:
        raise ValueError(f"input too small for {n_pools} pooling stages")
    return size
