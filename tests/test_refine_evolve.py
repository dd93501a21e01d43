"""The offline proposer: its programs mean what the env's reward means, and its proposals replay exactly."""

from __future__ import annotations

import numpy as np
import pytest

from rlctl.refine import evolve
from rlctl.refine.sandbox import Sandbox
from rlctl.refine.schema import Schema
from rlctl.refine.static import check_program

TERMS = {"progress": 10.0, "upright": 0.2, "crash": 20.0}
SCHEMA = Schema("toy", obs_dim=2, act_dim=1, terms=TERMS)


def test_the_hand_written_genome_reproduces_the_quadrotor_reward_on_recorded_states() -> None:
    pytest.importorskip("pybullet")
    from rlctl.refine.schema import record_states, schema_for
    from rlctl.sim2real_eval import preset_env_kwargs

    kwargs = preset_env_kwargs("rlctl/QuadHover-v0")
    schema = schema_for("rlctl/QuadHover-v0", kwargs)
    rows = record_states(schema, kwargs, n=300, seed=3)
    source = evolve.program(evolve.hand_written_genome(schema))
    params = check_program(source, [v.name for v in schema.variables()])
    with Sandbox(source, schema.layout(), params, schema.row_size) as box:
        total, comps = box.call(rows)
    env_reward = rows[:, schema.layout()["env_reward"][0]]
    np.testing.assert_allclose(total, env_reward, rtol=1e-9, atol=1e-9)
    assert set(comps) == set(schema.terms)
    terminated = rows[:, schema.layout()["terminated"][0]]
    assert terminated.any() and (np.abs(comps["crash"][terminated == 1] + 20.0) < 1e-9).all()  # crashes recorded


def test_round_one_is_the_initial_genome_and_its_mutants_and_proposals_replay_exactly() -> None:
    first = evolve.propose(SCHEMA, seed=7, round_=1, count=4, history=[])
    assert first[0] == evolve.initial_genome(SCHEMA) and len(first) == 4
    assert evolve.propose(SCHEMA, 7, 1, 4, []) == first
    assert evolve.propose(SCHEMA, 8, 1, 4, [])[1:] != first[1:]


def test_later_rounds_mutate_the_best_genome_so_far() -> None:
    best = evolve.Genome({"progress": 50.0, "upright": 0.01, "crash": 300.0}, {"progress": True, "upright": False,
                                                                                "crash": True})
    history = [[{"genome": evolve.initial_genome(SCHEMA).to_dict(), "key": [0.1, 0.2]},
                {"genome": best.to_dict(), "key": [0.5, 0.0]}, {"genome": best.to_dict(), "key": None}]]
    children = evolve.propose(SCHEMA, 1, 2, 6, history)
    log_dist = [np.mean([abs(np.log(c.coef[t] / best.coef[t])) for t in TERMS]) for c in children]
    assert np.median(log_dist) < 2.0  # near the parent (50, 0.01, 300), not the initial (1, 1, 1)
    assert np.median([c.coef["crash"] for c in children]) > 30


def test_a_mutant_always_keeps_a_term_on_and_positive_coefficients() -> None:
    rng = np.random.default_rng(0)
    lone = evolve.Genome({"progress": 1.0}, {"progress": True})
    for _ in range(50):
        child = evolve.mutate(lone, 1.0, rng)
        assert child.on["progress"] and child.coef["progress"] > 0


def test_the_program_is_a_weighted_sum_of_the_switched_on_terms_that_passes_the_checks() -> None:
    genome = evolve.Genome({"progress": 2.5, "upright": 0.3, "crash": 7.0}, {"progress": True, "upright": False,
                                                                              "crash": True})
    source = evolve.program(genome)
    assert check_program(source, [v.name for v in SCHEMA.variables()]) == ["env_progress", "env_crash"]
    namespace: dict = {}
    exec(source, namespace)
    total, comps = namespace["compute_reward"](np.array([0.1, 0.2]), np.array([0.0, -1.0]))
    np.testing.assert_allclose(total, [0.25, 0.5 - 7.0])
    assert set(comps) == {"progress", "crash"}
