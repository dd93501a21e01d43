"""The prompts: Eureka's structure (system, env + task, reward reflection with its tips), for numpy programs.

Eureka (Ma et al., ICLR 2024; ``eureka/utils/prompts``) gives the LLM the env's observation code and the task,
and after each round the best candidate's code with a *reward reflection*: every reward component and the task
metrics sampled about ten times over training, with max/mean/min, then tips. The context does not grow: the next
prompt is ``[system, env + task, best program, its reflection]``. Rejected programs come back with their
reason, so the next round can fix them. The env's own return is never shown under its own name: selection is
on the independent fitness, and showing a hand-written reward's return would steer the LLM towards copying it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlctl.refine.schema import Schema

SYSTEM = """You are a reward engineer trying to write reward functions to solve reinforcement learning tasks \
as effectively as possible. Your goal is to write a reward function for the environment that will help the agent \
learn the task described in text. Your reward function should use useful variables from the environment as \
inputs. Write it in Python with numpy: every input is a numpy array whose first axis is a batch of transitions \
(shape [N] or [N, k]), and every output must have shape [N]. An example signature:

def compute_reward(target_offset, velocity_body, terminated):
    ...
    return total_reward, {"distance": distance_reward, "crash": crash_penalty}

The function returns the total reward and a dictionary of its named components (each of shape [N])."""

CODE_TIPS = """The output of the reward function should consist of two items:
    (1) the total reward, a numpy array of shape [N],
    (2) a dictionary of each individual reward component, each of shape [N].
The code output should be formatted as a python code string: "```python ... ```".

Some helpful tips for writing the reward function code:
    (1) You may find it helpful to normalize the reward to a fixed range by applying transformations like \
np.exp to the overall reward or its components.
    (2) If you choose to transform a reward component, then you must also introduce a temperature parameter \
inside the transformation function; this parameter must be a named variable in the reward function and it must \
not be an input variable. Each transformed reward component should have its own temperature variable.
    (3) The parameters of compute_reward may only be variables from the list above, by their exact names.
    (4) Use only math and numpy (import numpy as np). The program runs in a sandbox: no other imports, no files, \
no printing, no attributes that start with an underscore, no classes, no randomness.
    (5) Compute each transition's reward from its own row only: no statistics over the batch (training calls \
the function one step at a time)."""

REFLECTION_HEAD = """We trained a RL policy using the provided reward function code and tracked the values of \
the individual components in the reward function as well as global policy metrics such as success rates and \
episode lengths after every {every} environment steps and the maximum, mean, minimum values encountered:"""

REFLECTION_TIPS = """Please carefully analyze the policy feedback and provide a new, improved reward function \
that can better solve the task. Some helpful tips for analyzing the policy feedback:
    (1) If the success rates are always near zero, then you must rewrite the entire reward function
    (2) If the values for a certain reward component are near identical throughout, then this means RL is not \
able to optimize this component as it is written. You may consider
        (a) Changing its scale or the value of its temperature parameter
        (b) Re-writing the reward component
        (c) Discarding the reward component
    (3) If some reward components' magnitude is significantly larger, then you must re-scale its value to a \
proper range
Please analyze each existing reward component in the suggested manner above first, and then write the reward \
function code."""

REJECTED = """Executing the reward function code above has the following error: {reason}. Please fix the bug \
and provide a new, improved reward function!"""


def initial_user(schema: Schema, task: str) -> str:
    rows = "\n".join(f"- {v.name} [N{''.join(f', {d}' for d in v.shape)}]: {v.doc}" for v in schema.variables())
    described = f"\n\nThe environment's own description:\n{schema.description}" if schema.description else ""
    return (f"The environment is {schema.env_id}.{described}\n\nThe variables compute_reward can take (each a "
            f"numpy array, first axis the batch):\n{rows}\n\nWrite a reward function for the following task: "
            f"{task}\n\n{CODE_TIPS}")


def messages_for(system: str, user0: str, feedback: tuple[str, str] | None) -> list[dict[str, str]]:
    """Eureka's non-growing context: the last round's chosen response and the feedback on it."""
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": user0}]
    if feedback is not None:
        msgs += [{"role": "assistant", "content": feedback[0]}, {"role": "user", "content": feedback[1]}]
    return msgs


def series_line(name: str, values: list[float]) -> str:
    """``name: [v0, v1, …], Max: x, Mean: y, Min: z`` over about ten snapshots, as Eureka prints them."""
    if not values:
        return f"{name}: (no values)"
    picks = [values[i] for i in np.linspace(0, len(values) - 1, min(10, len(values))).round().astype(int)]
    arr = np.asarray(values, dtype=np.float64)
    return (f"{name}: [{', '.join(f'{v:.3g}' for v in picks)}], Max: {arr.max():.3g}, Mean: {arr.mean():.3g}, "
            f"Min: {arr.min():.3g}")


def reflection(result: dict[str, Any], fitness_kind: str, rejected: list[str]) -> str:
    """The feedback on one trained candidate (``result`` as the candidate worker writes it)."""
    stats = result.get("series", {})
    lines = [REFLECTION_HEAD.format(every=result.get("series_every", "some"))]
    for name, values in stats.items():
        if name.startswith("reward/"):
            lines.append(series_line(name.removeprefix("reward/"), values))
    if "charts/success_rate" in stats:
        lines.append(series_line("success_rate (training episodes)", stats["charts/success_rate"]))
    if "charts/episodic_length" in stats:
        lines.append(series_line("episode_length", stats["charts/episodic_length"]))
    ev = result.get("eval", {})
    if fitness_kind == "success":
        lines.append(f"task score: success rate {ev.get('success_rate', 0):.2f} over {ev.get('episodes', 0)} "
                     "evaluation episodes (deterministic policy)")
    else:
        lines.append(f"task score (ground-truth return, deterministic policy): {ev.get('mean_return', 0):.3g}")
    if ev.get("failures"):
        lines.append("how the failed evaluation episodes ended: "
                     + ", ".join(f"{k} {v}" for k, v in ev["failures"].items()))
    if ev.get("median_final_distance") is not None:
        lines.append(f"median final distance to the target: {ev['median_final_distance']:.2f} m")
    if rejected:
        lines.append("\nOther programs of the same round were rejected:\n" + "\n".join(f"- {r}" for r in rejected))
    return "\n".join(lines) + "\n\n" + REFLECTION_TIPS + "\n\n" + CODE_TIPS
