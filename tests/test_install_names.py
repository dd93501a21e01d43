"""rlctl installs its layers as rlctl.agents and rlctl.envs: a user's own ``agents`` and ``envs`` packages
(common in RL projects) keep working next to it, installed editable or from a wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_FILES = {
    "envs/__init__.py": "",
    "envs/make.py": "def make_env():\n    raise RuntimeError('the user project make_env, not rlctl')\n",
    "envs/mine.py": ("import gymnasium as gym\n\n"
                     "gym.register('Mine-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv',"
                     " max_episode_steps=50)\n"),
    "agents/__init__.py": "",
    "agents/ppo.py": "class Agent:\n    '''The user project agent, without rlctl names.'''\n",
}
TRAIN = ["train", "--env", "envs.mine:Mine-v0", "--steps", "256", "--num-envs", "2", "--run-dir", "run",
         "--quiet", "--set", "ppo.num_steps=64", "--set", "ppo.minibatch_size=32", "--set", "run.eval_episodes=0"]
RUN_CLI = "import sys; from rlctl.cli import main; sys.exit(main(sys.argv[1:]))"


def _user_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for name, text in USER_FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    return project


def _train(project: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    return subprocess.run([sys.executable, "-c", RUN_CLI, *TRAIN], cwd=project, env=env, capture_output=True,
                          text=True, timeout=240)


def test_a_user_project_with_its_own_agents_and_envs_trains_with_the_editable_install(tmp_path: Path) -> None:
    project = _user_project(tmp_path)
    done = _train(project, [project])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "importing 'envs.mine' for env id 'envs.mine:Mine-v0'" in done.stderr
    assert (project / "run" / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_a_user_project_with_its_own_agents_and_envs_trains_with_a_wheel_install(tmp_path: Path) -> None:
    source = tmp_path / "source"  # pip builds in the source tree: a copy keeps build/ out of the checkout
    for name in ("agents", "envs", "rlctl"):
        shutil.copytree(ROOT / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(wheels), str(source)], check=True, capture_output=True,
                   timeout=300)
    (wheel,) = wheels.glob("rlctl-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.startswith("rlctl")} == set(), "the wheel claims other top-level names"
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "--target", str(site), str(wheel)], check=True, capture_output=True, timeout=300)
    project = _user_project(tmp_path)
    where = subprocess.run([sys.executable, "-c", "import rlctl.agents.ppo as m; print(m.__file__)"], cwd=project,
                           env={**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{project}"}, capture_output=True,
                           text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(site)  # the wheel's copy, not the checkout
    done = _train(project, [site, project])
    assert done.returncode == 0, done.stderr[-2000:]
    assert (project / "run" / "checkpoint.pt").is_file()
