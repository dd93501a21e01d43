"""The gradient-variance instrument: its statistics (agents/variance.py) and ``rlctl variance`` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rlctl.agents.distributions import ActionSpec
from rlctl.agents.policy import ActorCritic
from rlctl.agents.ppo import ppo_loss
from rlctl.agents.variance import (
    gradient_statistics,
    mirage_decomposition,
    mirage_terms,
    policy_gradient,
    variance_ratio_interval,
)


def test_gradient_statistics_recover_a_known_noise_level_signal_and_direction() -> None:
    torch.manual_seed(0)
    k, p, sigma = 400, 50, 0.5
    ref = torch.ones(p)
    samples = ref + sigma * torch.randn(k, p)
    stats = gradient_statistics(samples, ref)
    assert stats["variance"] == pytest.approx(sigma ** 2, rel=0.05)
    assert stats["snr"] == pytest.approx(p / (p * sigma ** 2), rel=0.05)  # ‖ref‖² / tr Var = 50 / 12.5
    assert stats["relative_error"] == pytest.approx(sigma * math.sqrt(p) / float(ref.norm()), rel=0.05)
    assert stats["reference_cosine"] == pytest.approx(1.0)
    biased = gradient_statistics(samples + 10.0 * torch.eye(p)[0], ref + 10.0 * torch.eye(p)[0], ref)
    assert biased["reference_cosine"] < 0.9 and biased["cosine"] < stats["cosine"]  # bias shows against the common ref
    with pytest.raises(ValueError):
        gradient_statistics(samples[:1], ref)


def test_variance_ratio_interval_brackets_a_known_ratio() -> None:
    torch.manual_seed(1)
    noise = torch.randn(60, 200)
    ratio, lo, hi = variance_ratio_interval(0.5 * noise, noise, resamples=500)
    assert ratio == pytest.approx(0.25) and lo == pytest.approx(0.25) and hi == pytest.approx(0.25)
    assert variance_ratio_interval(0.5 * noise, noise, scale_a=0.25)[0] == pytest.approx(1.0)  # same SNR
    other = torch.randn(60, 200)
    ratio, lo, hi = variance_ratio_interval(0.5 * noise, other, resamples=500)
    assert ratio == pytest.approx(float(0.25 * noise.var(0).sum() / other.var(0).sum()))
    assert lo < 0.25 < hi and lo < ratio < hi and hi - lo < 0.15


def test_mirage_decomposition_recovers_known_components() -> None:
    # s: μ_s ~ N(0, 1); a = ±1 (score g = a, mean zero); q(s, a, τ) = μ_s + β·a + η_τ, η ~ N(0, 0.25).
    # X = g·q: Σ_τ = Var η = 0.25; Σ_a with no baseline = E μ_s² = 1, with φ(s) = μ_s it is 0; the cross term
    # E_s(E_{a,τ} X)² = β² bounds Σ_s (here 0: every state has the same mean gradient β).
    torch.manual_seed(2)
    beta, n = 0.7, 5_000
    terms = []
    mus = torch.randn(n)
    for mu in mus.tolist():
        a, a2 = (torch.randint(0, 2, (2,)) * 2 - 1).float().tolist()
        qx, qy, q2 = (mu + beta * act + 0.5 * float(torch.randn(())) for act in (a, a, a2))
        g, g2 = torch.tensor([a]), torch.tensor([a2])
        x = {"none": g * qx, "state": g * (qx - mu)}
        y = {"none": g * qy, "state": g * (qy - mu)}
        terms.append(mirage_terms(x, y, (g * (qx - mu), g2 * (q2 - mu)), g * qx, g * qy))
    dec = mirage_decomposition(terms)
    assert dec["sigma_tau"]["mean"] == pytest.approx(0.25, abs=4 * dec["sigma_tau"]["se"] + 1e-3)
    assert dec["sigma_a:none"]["mean"] == pytest.approx(float((mus ** 2).mean()),
                                                       abs=4 * dec["sigma_a:none"]["se"])
    assert abs(dec["sigma_a:state"]["mean"]) < 4 * dec["sigma_a:state"]["se"]
    assert dec["sigma_s_bound"]["mean"] == pytest.approx(beta ** 2, abs=4 * dec["sigma_s_bound"]["se"])


@pytest.mark.parametrize("per_dim", [False, True])
def test_policy_gradient_is_the_ppo_losss_gradient_at_the_old_policy(per_dim: bool) -> None:
    torch.manual_seed(3)
    agent = ActorCritic(4, ActionSpec("continuous", 2), [8])
    params = [p for name, p in agent.named_parameters() if name.startswith("actor.") or name == "log_std"]
    obs, acts = torch.randn(32, 4), torch.randn(32, 2)
    adv = torch.randn(32, 2) if per_dim else torch.randn(32)
    got = policy_gradient(agent.dist, params, obs, acts, adv, minibatch_size=16, norm_adv=True)
    losses = []
    for rows in (slice(0, 16), slice(16, 32)):  # the update's minibatches, each normalized on its own
        a = (adv[rows] - adv[rows].mean()) / (adv[rows].std() + 1e-8)
        dist = agent.dist(obs[rows])
        new = dist.log_prob_dims(acts[rows]) if per_dim else dist.log_prob(acts[rows])
        loss, _ = ppo_loss(new, new.detach(), a, torch.zeros(16), torch.zeros(16), torch.zeros(16),
                           torch.zeros(16), 0.2, False, 0.0, 0.0)
        losses.append(loss)
    want = torch.cat([g.reshape(-1) for g in torch.autograd.grad(torch.stack(losses).mean(), params)])
    torch.testing.assert_close(got, want)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlctl.cli import main

    run = tmp_path_factory.mktemp("variance") / "tm"
    assert main(["train", "--env", "rlctl/TargetMatching-v0", "--steps", "128", "--num-envs", "4", "--run-dir",
                 str(run), "--quiet", "--set", "env.kwargs.dim=3", "--set", "ppo.num_steps=16",
                 "--set", "ppo.minibatch_size=16", "--set", "ppo.update_epochs=1", "--set", "run.eval_episodes=0",
                 "--set", "baseline.type=factorized"]) == 0
    return run


def test_variance_cli_prints_a_table_and_writes_json_and_png(tiny_run: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from rlctl.cli import main

    capsys.readouterr()
    out = tiny_run / "var.json"
    assert main(["variance", str(tiny_run), "--batch-size", "16", "--reference", "2", "--fit-batches", "1",
                 "--baselines", "none,state,factorized,factorized:q_mc", "--decompose", "--states", "2",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| factorized:regress |" in printed and "sigma_tau" in printed
    result = json.loads(out.read_text())
    assert result["batches"] == 30 and result["trained_baseline"] == "factorized:regress"
    assert set(result["estimators"]) == {"none", "state", "factorized:regress", "factorized:q_mc"}
    assert result["decomposition"]["sigma_tau"]["mean"] == 0.0  # one-step episodes: no trajectory noise
    assert out.with_suffix(".png").stat().st_size > 1000


@pytest.mark.parametrize(("args", "fragment"), [
    (["--batches", "5"], "--batches must be at least 30"),
    (["--baselines", "state,qprop"], "unknown baseline 'qprop'"),
    (["--baselines", "factorized:q_max"], "unknown factorized mode"),
    (["--batch-size", "18"], "multiple of the run's env.num_envs (4)"),
])
def test_bad_variance_input_is_one_line_and_exit_2(tiny_run: Path, capsys: pytest.CaptureFixture[str],
                                                   args: list[str], fragment: str) -> None:
    from rlctl.cli import main

    capsys.readouterr()
    assert main(["variance", str(tiny_run), "--quiet", "--out", str(tiny_run / "bad.json"), "--force", *args]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_variance_of_a_missing_run_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlctl.cli import main

    assert main(["variance", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
