"""Per-sample seeding: a sample's augmentation is a pure function of (seed, epoch, index, attempt).

Both functions use NumPy's Philox, a counter-based generator (Salmon et al., "Parallel random numbers: as easy as
1, 2, 3", SC 2011): a stream is fully named by its key and counter, so each sample gets its own draws with no
hashing, no shared state and no dependence on the worker count or the order of loading.
"""

from __future__ import annotations

import random

import numpy as np

_MASK64 = (1 << 64) - 1


def sample_seed(seed: int, epoch: int, index: int, attempt: int = 0) -> int:
    """63-bit seed of one sample's augmentation: the first output of Philox keyed by (seed, epoch) at counter
    (index, attempt). Any ints (negative ones wrap to 64 bits); about 8 us.

    Returns:
        An int in [0, 2**63), e.g. for :func:`sample_generators` or ``torch.manual_seed``.
    """
    bits = np.random.Philox(counter=np.array([index & _MASK64, attempt & _MASK64, 0, 0], dtype=np.uint64),
                            key=np.array([seed & _MASK64, epoch & _MASK64], dtype=np.uint64))
    return int(bits.random_raw()) >> 1


def sample_generators(seed: int) -> tuple[np.random.Generator, random.Random]:
    """Fresh generators for one sample, shared by every transform of its pipeline (Albumentations'
    ``set_random_state``): a NumPy ``Generator`` on Philox keyed by ``seed`` and a ``random.Random(seed)``. Their
    draws are a pure function of ``seed`` (any int; negative ones wrap to 64 bits); about 14 us for both."""
    key = seed & _MASK64
    return np.random.Generator(np.random.Philox(key=key)), random.Random(key)
