"""``rlctl plot``: rolling means and the last-N summary come from the run's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlctl.cli import main
from rlctl.cli.plot import rolling_mean


def test_rolling_mean_averages_the_last_window_values() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    assert np.allclose(rolling_mean(values, 2), [1.0, 1.5, 2.5, 3.5, 7.0])
    assert np.allclose(rolling_mean(values, 10), np.cumsum(values) / np.arange(1, 6))


def test_plot_writes_a_png_and_summarizes_the_last_episodes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("env:\n  id: ALE/Pong-v5\n")
    rows = [{"step": 100 * i, "tag": "charts/episodic_return", "value": float(-21 + i)} for i in range(1, 31)]
    rows.append({"step": 3000, "tag": "losses/value_loss", "value": 5.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "curve.png"
    assert main(["plot", str(run), "--out", str(out), "--window", "10", "--hline", "-10"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = capsys.readouterr().out
    assert "| run | 30 | 3,000 | 4.5 |" in summary  # the last 10 returns are 0 .. 9


def test_plot_of_a_directory_without_metrics_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
