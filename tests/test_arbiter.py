"""Agency transfer: the pure arbitration rules (who acts) and the transfer schedules, by hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from rlctl.agents.arbiter import (
    calf_episode_start,
    calf_step,
    gate_level,
    jsrl_step,
    prob_step,
    residual_action,
    transfer_share,
)


def test_linear_share_rises_from_the_start_to_one_at_the_transfer_end_and_stays() -> None:
    assert transfer_share("linear", 0.0, 0.2, 0.8) == pytest.approx(0.2)
    assert transfer_share("linear", 0.4, 0.2, 0.8) == pytest.approx(0.6)
    assert transfer_share("linear", 0.8, 0.2, 0.8) == 1.0
    assert transfer_share("linear", 0.95, 0.2, 0.8) == 1.0  # the final stage: baseline disconnected


def test_fixed_share_never_moves_and_other_schedules_disconnect_after_the_end() -> None:
    assert transfer_share("fixed", 0.99, 0.3, 0.5) == 0.3
    assert transfer_share("multiplicative", 0.1, 0.1, 0.8, updates=3, factor=2.0) == pytest.approx(0.8)
    assert transfer_share("multiplicative", 0.1, 0.1, 0.8, updates=10, factor=2.0) == 1.0
    assert transfer_share("success_gated", 0.5, 0.0, 0.8, gated=0.4) == 0.4
    assert transfer_share("success_gated", 0.85, 0.0, 0.8, gated=0.4) == 1.0
    with pytest.raises(ValueError, match="unknown transfer schedule"):
        transfer_share("cosine", 0.1, 0.0, 0.8)


def test_success_gate_raises_on_success_lowers_on_collapse_and_holds_in_between() -> None:
    assert gate_level(0.3, success=0.9, threshold=0.8, step=0.1) == pytest.approx(0.4)
    assert gate_level(0.3, success=0.3, threshold=0.8, step=0.1) == pytest.approx(0.2)
    assert gate_level(0.3, success=0.6, threshold=0.8, step=0.1) == pytest.approx(0.3)
    assert gate_level(0.95, success=1.0, threshold=0.8, step=0.1) == 1.0 and gate_level(0.05, 0.0, 0.8, 0.1) == 0.0
    # the starting share is the floor: a gate started at 0.5 never hands the learner less than half the steps
    assert gate_level(0.55, success=0.0, threshold=0.8, step=0.1, floor=0.5) == 0.5


def test_prob_mode_gives_the_learner_its_share_of_steps() -> None:
    uniforms = np.random.default_rng(0).random(100_000)
    assert prob_step(0.3, uniforms).mean() == pytest.approx(0.3, abs=0.01)
    assert prob_step(1.0, uniforms).all() and not prob_step(0.0, uniforms).any()


def test_jsrl_mode_lets_the_guide_act_for_the_first_steps_of_each_episode() -> None:
    steps = np.arange(12)
    assert jsrl_step(0.3, steps, horizon=10).tolist() == [False] * 7 + [True] * 5  # h = ⌈10 · 0.7⌉ = 7
    assert jsrl_step(1.0, steps, horizon=10).all() and not jsrl_step(0.0, steps[:10], horizon=10).any()


def test_calf_certifies_an_improvement_of_nu_and_relaxes_otherwise() -> None:
    values = np.array([1.0, 0.5, 0.5])
    certified_value = np.array([0.9, 0.6, 0.6])
    relax = np.array([0.2, 0.2, 0.2])
    uniforms = np.array([0.9, 0.1, 0.5])
    acts, certified, new_value, new_relax = calf_step(values, certified_value, relax, 0.0, uniforms, nu=0.05,
                                                      step_factor=0.5)
    assert certified.tolist() == [True, False, False]
    assert acts.tolist() == [True, True, False]  # certified; relaxed (0.1 < 0.2); the baseline acts
    assert new_value.tolist() == [1.0, 0.6, 0.6] and new_relax.tolist() == [0.1, 0.1, 0.1]
    # the transfer share is a floor under the relax probability
    assert calf_step(values, certified_value, relax, 0.6, uniforms, 0.05, 0.5)[0].tolist() == [True, True, True]
    # at an episode's first step V† = V(s_0) was just set: nothing is certified there
    start = np.array([True, False, False])
    assert not calf_step(values, certified_value, relax, 0.0, uniforms, 0.05, 0.5, episode_start=start)[1].any()


def test_calf_episode_start_sets_the_certified_value_and_grows_the_relax_probability_after_the_first() -> None:
    value, relax, relax_init = calf_episode_start(np.array([3.0, 4.0]), np.array([0.5, 0.5]), 0.1,
                                                  first=np.array([True, False]))
    assert value.tolist() == [3.0, 4.0]
    assert relax.tolist() == pytest.approx([0.5, 0.55]) and relax_init.tolist() == pytest.approx([0.5, 0.55])


def test_residual_fades_the_baseline_out_as_the_share_grows() -> None:
    learner, baseline = np.array([0.1, -0.2]), np.array([1.0, 1.0])
    assert residual_action(learner, baseline, 0.0).tolist() == pytest.approx([1.1, 0.8])
    assert residual_action(learner, baseline, 1.0).tolist() == pytest.approx([0.1, -0.2])
