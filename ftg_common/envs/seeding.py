"""Seeds derived from (run seed, purpose, counters): every random stream is reproducible in isolation."""

from __future__ import annotations

import numpy as np

# Purposes keep streams independent even when the counters coincide.
EPISODE = 1
ACTIONS = 2
MINIBATCH = 3
EVAL = 4
INIT = 5
SDE_NOISE = 6  # gSDE exploration matrices: (iteration, shard, draw index within the rollout)
# Off-policy streams, numbered apart from the ones above so new on-policy purposes cannot collide.
REPLAY_SAMPLE = 101
OPE_BOOTSTRAP = 102


def derive_seed(run_seed: int, purpose: int, *counters: int) -> int:
    """A 32-bit seed that depends on every argument; cheap enough to call at each episode reset."""
    return int(np.random.SeedSequence([run_seed, purpose, *counters]).generate_state(1)[0])


def derive_rng(run_seed: int, purpose: int, *counters: int) -> np.random.Generator:
    """A numpy Generator seeded from every argument (the stream behind ``derive_seed``'s seeds)."""
    return np.random.default_rng(np.random.SeedSequence([run_seed, purpose, *counters]))
