"""Per-sample seeding: a sample's augmentation is a pure function of (seed, epoch, index, attempt)."""

from __future__ import annotations

import random

import numpy as np

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective mix of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, index: int, attempt: int = 0) -> int:
    """63-bit seed of one sample's augmentation, a pure function of (seed, epoch, index, attempt), so the
    same sample gets the same crop whatever the worker count or the order of loading.

    Chained SplitMix64 mixing, about 2 us (``np.random.SeedSequence`` takes about 40 us per sample in a worker).
    """
    h = 0
    for v in (seed, epoch, index, attempt):
        h = _splitmix64(h ^ (v & _MASK64))
    return h >> 1


class SampleGenerators:
    """One NumPy and one Python generator, shared by all transforms of a pipeline and reseeded for every sample.

    Reseeding sets the PCG64 state and re-seeds ``random.Random`` in place (about 6 us), where new generators per
    transform (``Compose.set_random_seed``) cost about 200 us per sample.
    """

    _PCG64_INCREMENT = 0xDA3E39CB94B95BDB4A1B1D2E3C4F5A6B | 1  # any odd 128-bit constant selects a stream

    def __init__(self) -> None:
        self.bit_generator = np.random.PCG64(0)
        self.numpy = np.random.Generator(self.bit_generator)
        self.python = random.Random()

    def reseed(self, seed: int) -> None:
        """Make both generators a pure function of ``seed`` (any int)."""
        seed &= _MASK64
        self.python.seed(seed)
        state = (_splitmix64(seed) << 64) | _splitmix64(seed ^ 0x5851F42D4C957F2D)
        self.bit_generator.state = {"bit_generator": "PCG64", "has_uint32": 0, "uinteger": 0,
                                    "state": {"state": state, "inc": self._PCG64_INCREMENT}}
