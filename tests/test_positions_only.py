"""The positions-only MuJoCo tasks are their v5 task with the velocities cut from the observation: the same
dynamics, rewards, terminations and time limit, seeded alike."""

from __future__ import annotations

import numpy as np
import pytest

from rlctl.envs.make import make_env


@pytest.mark.parametrize(("partial", "full", "keep"), [
    ("rlctl/InvertedPendulumP-v5", "InvertedPendulum-v5", slice(0, 2)),
    ("rlctl/HalfCheetahP-v5", "HalfCheetah-v5", slice(0, 8)),
])
def test_a_positions_only_task_is_the_full_task_without_its_velocities(partial: str, full: str, keep: slice) -> None:
    envs = make_env(partial), make_env(full)
    try:
        assert envs[0].spec is not None and envs[1].spec is not None
        assert envs[0].spec.max_episode_steps == envs[1].spec.max_episode_steps
        assert envs[0].observation_space.shape == (keep.stop,)
        seen = [env.reset(seed=3)[0] for env in envs]
        rng = np.random.default_rng(0)
        for _ in range(60):
            np.testing.assert_array_equal(seen[0], seen[1][keep])
            action = rng.uniform(-1.0, 1.0, envs[0].action_space.shape)
            (obs_p, rew_p, term_p, trunc_p, _), (obs_f, rew_f, term_f, trunc_f, _) = (env.step(action) for env in envs)
            assert (rew_p, term_p, trunc_p) == (rew_f, term_f, trunc_f)
            if term_p:
                break
            seen = [obs_p, obs_f]
        assert len(seen[0]) < len(seen[1])  # the velocities really are gone
    finally:
        for env in envs:
            env.close()
