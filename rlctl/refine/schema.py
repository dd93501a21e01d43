"""What a generated reward program may read: the env's variables, named, with shapes and meanings.

A transition is packed into one flat float64 row (obs, action, next_obs, env_reward, terminated, truncated,
then the info values and the env's own reward terms); the program's variables are *views* of that row, built
in the sandbox. So the trainer sends one small array per step, and the same layout describes the variables to
the LLM, checks the program's signature, and records the states programs are dry-run on.

Envs that name their observation parts (``obs_slices``) and reward weights (``weights``, with the terms in
``info["reward_components"]``), as the quadrotor does, get named parts of the observation and their reward terms
divided by their weights (``env_progress`` = metres closed this step, ...): the vocabulary both the LLM and the
offline evolution strategy write rewards in. Other envs expose the raw transition and, in the prompt, their
source. The fitness is the success rate where the env reports ``info["is_success"]``, else its own return.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rlctl.envs.make import make_env
from rlctl.errors import UserError

QUAD_VIEWS = {  # obs_slices name -> (variable, meaning)
    "target": ("target_offset", "current target minus position, world frame [m]"),
    "rotation": ("rotation", "body-to-world rotation matrix, row-major; rotation[:, 8] = cos(tilt)"),
    "velocity": ("velocity_body", "linear velocity in the body frame [m/s]"),
    "body_rates": ("body_rates", "angular velocity, body frame (gyro) [rad/s]"),
    "actions": ("prev_actions", "the last commanded actions, newest first, each in [-1, 1]"),
}
QUAD_INFO = {  # info key -> meaning (true state, also when the observation is noisy)
    "distance": "distance to the current target after the step [m]",
    "speed": "speed (world frame) after the step [m/s]",
    "final_target": "1 while the current target is the last one (the hold point), else 0",
    "waypoint": "index of the current target (waypoints passed so far)",
    "is_success": "1 on the last step of an episode that held at the goal and never crashed, else 0",
}
TERM_DOCS = {  # the quadrotor's reward terms, unit weight (envs/uav/quadrotor.py)
    "progress": "metres closed toward the current target this step (negative when moving away)",
    "proximity": "1 - tanh(distance / proximity_scale) at the last target, 0 before it",
    "hold": "1 while within the success tolerance (position and speed) of the last target, else 0",
    "upright": "cos(tilt) - 1 (0 level, negative when tilted)",
    "spin": "-|body rates|^2",
    "action_rate": "-|a_t - a_(t-1)|^2 (motor chatter)",
    "waypoint": "1 on the step an intermediate waypoint is passed",
    "crash": "-1 on a failure termination (crash, out of bounds, over-tilt)",
    "success": "1 on the last step of a successful episode",
}


@dataclass(frozen=True)
class Variable:
    name: str
    shape: tuple[int, ...]  # per transition
    doc: str
    start: int  # where it lies in the packed row

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class Schema:
    """The packed-row layout of one env's transitions and the program variables it holds."""

    env_id: str
    obs_dim: int
    act_dim: int
    info_keys: tuple[str, ...] = ()
    terms: dict[str, float] = field(default_factory=dict)  # term name -> the env's weight (to undo it)
    views: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # name -> (start, stop, doc) in next_obs
    fitness: str = "return"  # "success" when the env reports info["is_success"]
    description: str = ""

    @property
    def row_size(self) -> int:
        return 2 * self.obs_dim + self.act_dim + 3 + len(self.info_keys) + len(self.terms)

    def variables(self) -> list[Variable]:
        o, a = self.obs_dim, self.act_dim
        out = [Variable("obs", (o,), "observation before the step", 0),
               Variable("action", (a,), "action taken (as the env received it)", o),
               Variable("next_obs", (o,), "observation after the step", o + a),
               Variable("env_reward", (), "the env's own reward for the step", 2 * o + a),
               Variable("terminated", (), "1 if the episode ended here by a terminal event, else 0", 2 * o + a + 1),
               Variable("truncated", (), "1 if the episode was cut by the time limit here, else 0", 2 * o + a + 2)]
        for name, (start, stop, doc) in self.views.items():
            out.append(Variable(name, (stop - start,), doc + " (part of next_obs)", o + a + start))
        base = 2 * o + a + 3
        for i, key in enumerate(self.info_keys):
            out.append(Variable(key, (), QUAD_INFO.get(key, f"info[{key!r}]"), base + i))
        base += len(self.info_keys)
        for i, term in enumerate(self.terms):
            out.append(Variable(f"env_{term}", (), "the env's reward term, unit weight: "
                                + TERM_DOCS.get(term, term), base + i))
        return out

    def layout(self) -> dict[str, list[int]]:
        """name -> [start, size, *shape]: what the sandbox needs to cut variables out of a row."""
        return {v.name: [v.start, v.size, *v.shape] for v in self.variables()}

    def pack(self, obs: Any, action: Any, next_obs: Any, env_reward: float, info: dict[str, Any],
             terminated: bool, truncated: bool) -> np.ndarray:
        """One transition as a packed row ``[row_size]`` (the hot path: called once per env step)."""
        row = np.empty(self.row_size, dtype=np.float64)
        o, a = self.obs_dim, self.act_dim
        row[:o] = np.ravel(obs)
        row[o:o + a] = np.ravel(action)
        row[o + a:2 * o + a] = np.ravel(next_obs)
        i = 2 * o + a
        row[i], row[i + 1], row[i + 2] = env_reward, terminated, truncated
        i += 3
        for key in self.info_keys:
            row[i] = float(info.get(key, 0.0))
            i += 1
        if self.terms:
            comps = info.get("reward_components", {})
            for term, weight in self.terms.items():
                row[i] = comps.get(term, 0.0) / weight
                i += 1
        return row

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @staticmethod
    def from_json(text: str | dict[str, Any]) -> Schema:
        data = json.loads(text) if isinstance(text, str) else dict(text)
        data["info_keys"] = tuple(data.get("info_keys", ()))
        data["views"] = {k: (int(v[0]), int(v[1]), str(v[2])) for k, v in data.get("views", {}).items()}
        return Schema(**data)


def schema_for(env_id: str, env_kwargs: dict[str, Any], max_episode_steps: int | None = None) -> Schema:
    """Build one env and read its layout (observation parts, info keys, reward terms)."""
    env = make_env(env_id, env_kwargs, max_episode_steps)
    try:
        obs_shape, act_space = env.observation_space.shape, env.action_space
        if obs_shape is None or len(obs_shape) != 1:
            raise UserError(f"refine needs a flat vector observation; {env_id} has {env.observation_space}")
        act_dim = 1 if act_space.shape in ((), None) else int(np.prod(act_space.shape))
        base = env.unwrapped
        env.reset(seed=0)
        info = env.step(env.action_space.sample())[4]  # which info keys the env reports
        views: dict[str, tuple[int, int, str]] = {}
        terms: dict[str, float] = {}
        slices = getattr(base, "obs_slices", {})
        quad = "target" in slices and "rotation" in slices
        for part, sl in slices.items():
            name, doc = QUAD_VIEWS[part] if quad and part in QUAD_VIEWS else (part, f"the {part!r} part of obs")
            if sl.stop > sl.start:
                views[name] = (int(sl.start), int(sl.stop), doc)
        weights = getattr(base, "weights", None)
        if isinstance(weights, dict) and "reward_components" in info:
            terms = {k: float(w) for k, w in weights.items() if w != 0}  # dividing by them gives unit terms
        info_keys = tuple(k for k in QUAD_INFO if k in info)
        fitness = "success" if "is_success" in info else "return"
        description = _describe(base)
        return Schema(env_id, int(obs_shape[0]), act_dim, info_keys, terms, views, fitness, description)
    finally:
        env.close()


def _describe(base: Any) -> str:
    """The env's own words: its module docstring (the quadrotor's explains observations and rewards), or for
    other envs the class source, pruned to a few hundred lines (Eureka shows the observation code)."""
    if hasattr(base, "obs_slices"):  # the task's module and its base class's (the quadrotor's physics and rules)
        docs = []
        for cls in type(base).__mro__:
            module = inspect.getmodule(cls)
            doc = inspect.cleandoc(module.__doc__) if module is not None and module.__doc__ else ""
            if doc and doc not in docs and not cls.__module__.startswith("gymnasium"):
                docs.append(doc)
        if docs:
            return "\n\n".join(docs)
    try:
        source = inspect.getsource(type(base))
    except (OSError, TypeError):
        return (type(base).__doc__ or "").strip()
    lines = source.splitlines()
    return "\n".join(lines[:250]) + ("\n# ... (cut)" if len(lines) > 250 else "")


def record_states(schema: Schema, env_kwargs: dict[str, Any], n: int = 512, seed: int = 0,
                  max_episode_steps: int | None = None) -> np.ndarray:
    """``[n, row_size]`` rows from random-action episodes: what programs are dry-run on before training.

    Continuous actions are drawn around the env's neutral action when it has one (a hovering quadrotor
    then flies for a while instead of dropping at once), so the rows cover flight, crashes and time limits.
    """
    env = make_env(schema.env_id, env_kwargs, max_episode_steps)
    rng = np.random.default_rng(seed)
    rows: list[np.ndarray] = []
    try:
        neutral = getattr(env.unwrapped, "neutral_action", None)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        episode = 0
        while len(rows) < n:
            if neutral is not None:
                action = np.clip(neutral + rng.normal(0, 0.3, np.shape(neutral)), -1, 1).astype(np.float32)
            else:
                action = env.action_space.sample()
            next_obs, reward, terminated, truncated, info = env.step(action)
            rows.append(schema.pack(obs, action, next_obs, float(reward), info, terminated, truncated))
            obs = next_obs
            if terminated or truncated or len(rows) % 200 == 0:  # many short pieces: more variety
                episode += 1
                obs, _ = env.reset(seed=seed + episode)
    finally:
        env.close()
    return np.stack(rows)
