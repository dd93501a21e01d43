"""What the MuJoCo table compares against: published PPO results, and the one reference per task that scales
the aggregate.

Published results differ in their metric (the mean of the last 100 training episodes, the maximum over training
of a test average, a deterministic evaluation of one seed), env version and seed count (anchors.md §0), so the
table prints them beside each task for scale only. The aggregate's normalized score needs one scale of its own
metric: random actions = 0 (:func:`random_score`), :data:`REFERENCES` = 1, from one source for every task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# Published PPO results near 1M steps (../shared/reference/anchors.md §1a), as (score, source), printed beside
# each task for scale. Their metrics differ (training return, max of training, deterministic evaluation), so
# only REFERENCES, one source of the table's own metric, scales the aggregate.
ANCHORS: dict[str, list[tuple[float, str]]] = {
    "HalfCheetah-v5": [(1668.58, "baselines ppo2, v1, 6 seeds, training return"),
                       (1442.64, "CleanRL, v4, 3 seeds, last 100"), (5819.10, "SB3 zoo, v3, 1 seed, det. eval")],
    "Hopper-v5": [(2316.16, "baselines ppo2, v1, 6 seeds, training return"),
                  (2382.86, "CleanRL, v4, 3 seeds, last 100"), (2410.44, "SB3 zoo, v3, 1 seed, det. eval")],
    "Walker2d-v5": [(3424.95, "baselines ppo2, v1, 6 seeds, training return"),
                    (2287.95, "CleanRL, v4, 3 seeds, last 100"), (3478.80, "SB3 zoo, v3, 1 seed, det. eval")],
    "Ant-v5": [(3258.4, "Tianshou, v3, 10 seeds, max of training"), (1327.16, "SB3 zoo, v3, 1 seed, det. eval")],
    "Humanoid-v5": [(716.11, "CleanRL, v4, 3 seeds, last 100"), (787.1, "Tianshou, v3, 10 seeds, max of training")],
    "Swimmer-v5": [(111.19, "baselines ppo2, v1, 6 seeds, training return"),
                   (281.56, "SB3 zoo, v3, 1 seed, det. eval, gamma 0.9999")],
    "InvertedPendulum-v5": [(809.43, "baselines ppo2, v1, 6 seeds, training return"),
                            (963.09, "CleanRL, v4, 3 seeds, last 100")],
    "InvertedDoublePendulum-v5": [(7102.91, "baselines ppo2, v1, 6 seeds, training return"),
                                  (9231.3, "Tianshou, v2, 10 seeds, max of training")],
    "Reacher-v5": [(-6.71, "baselines ppo2, v1, 6 seeds, training return"),
                   (-4.1, "Tianshou, v2, 10 seeds, max of training")],
    "Pusher-v5": [(-40.38, "CleanRL, v4, 3 seeds, last 100")],
}

REFERENCE_SOURCE = ("CleanRL `ppo_continuous_action` (Open RL Benchmark, pr-424): gymnasium v4, 3 seeds, the "
                    "mean of the last 100 training episodes at 1M steps, the table's own metric and budget")
REFERENCES: dict[str, float] = {
    "HalfCheetah-v5": 1442.64, "Hopper-v5": 2382.86, "Walker2d-v5": 2287.95, "Humanoid-v5": 716.11,
    "InvertedPendulum-v5": 963.09, "Pusher-v5": -40.38,
}
"""1.0 of the normalized score (anchors.md §1a). One source for all: CleanRL is the only published PPO result of
the same metric at 1M steps on these tasks; Ant, Swimmer, InvertedDoublePendulum and Reacher have none, and stay
out of the aggregate rather than be scaled by another metric. (v4 and v5 differ slightly in their dynamics.)"""


def random_score(env_id: str, episodes: int = 10) -> float:
    """Mean return of uniform random actions (the 0 of the normalized score), seeded."""
    from rlctl.envs.make import make_env

    env = make_env(env_id)
    env.action_space.seed(0)
    total = 0.0
    for i in range(episodes):
        env.reset(seed=i)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
    env.close()
    return total / episodes


def normalized_scores(runs: list[dict[str, Any]], tasks: list[str],
                      random: Callable[[str], float] = random_score) -> dict[str, tuple[np.ndarray, float]]:
    """Per task with a reference: rlctl's last-100 returns on the scale random actions = 0 (``random(task)``),
    the task's :data:`REFERENCES` entry = 1, and the random score used."""
    out = {}
    for task in tasks:
        returns = [r["last100"] for r in runs if r["env"] == task and r["lib"] == "rlctl"]
        if returns and task in REFERENCES:
            low = random(task)
            out[task] = ((np.array(returns) - low) / (REFERENCES[task] - low), low)
    return out
