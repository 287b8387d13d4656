"""Seeds derived from (seed, epoch, step or index), so that a resumed training run replays the same draws.

A training run that is killed and resumed from its last checkpoint must draw exactly what the uninterrupted
run drew. Generators that carry on from their previous state would have to be checkpointed, and even then
anything drawn between the restore and the first resumed step (a sanity-check validation, a dataloader
iterator's base seed) would shift them. Instead every random source of training is reseeded from a hash of
the numbers that say where training is: the data order from (seed, epoch), a sample's crop and flip from
(seed, epoch, index), a step's mixing, hiding and dropout from (seed, epoch, batch index).
"""

from __future__ import annotations

import os

import numpy as np
import torch

__all__ = ["AUGMENT", "METHOD", "MIXER", "ORDER", "TORCH", "derive_seed", "rank_keys", "seed_torch_for_step"]

# Stream tags, the first key of every derived seed: two consumers given the same numbers (e.g. sample 3 and
# batch 3 of one epoch) still get unrelated seeds.
ORDER, AUGMENT, MIXER, METHOD, TORCH = range(5)

_UINT64 = 2**64


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of the integer ``keys``, e.g. ``(AUGMENT, seed, epoch, index)``.

    The keys go through NumPy's ``SeedSequence`` hash, so neighbouring tuples such as ``(0, 1, 2)`` and
    ``(0, 2, 1)`` give unrelated seeds. Negative keys are taken modulo 2**64 (torch accepts negative seeds).

    Raises:
        ValueError: If no key is given or a key is not an int.
    """
    if not keys:
        raise ValueError("keys: give at least one int")
    for key in keys:
        if isinstance(key, bool) or not isinstance(key, int | np.integer):
            raise ValueError(f"keys must be ints, got {key!r}")
    state = np.random.SeedSequence([int(k) % _UINT64 for k in keys]).generate_state(1, np.uint64)[0]
    return int(state) >> 1  # 63 bits: a valid seed for torch, NumPy and Python alike


def rank_keys(rank: int) -> tuple[int, ...]:
    """The extra key of a training step's seeds on rank ``rank``: none on rank 0 (a single process draws exactly
    as before), ``(rank,)`` elsewhere, so that DDP ranks mix, hide and drop out differently."""
    return () if rank == 0 else (int(rank),)


def seed_torch_for_step(epoch: int, batch_idx: int, rank: int = 0) -> bool:
    """Reseed torch's global RNG (dropout and other unseeded draws) from the run's seed, epoch and batch.

    The run's seed is the one ``pl.seed_everything`` recorded in ``PL_GLOBAL_SEED``; without it the global RNG
    is left alone, so an unseeded run stays unseeded.

    Returns:
        Whether the RNG was reseeded.
    """
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is None:
        return False
    torch.manual_seed(derive_seed(TORCH, int(seed), epoch, batch_idx, *rank_keys(rank)))
    return True
