"""LLM-generated reward refinement as an optional outer loop around training (``rlctl refine``).

Eureka's loop (Ma et al., ICLR 2024) with every generated program treated as untrusted: candidates come from an
OpenAI-compatible LLM (:mod:`.llm`), recorded responses, or an offline evolution strategy over the env's reward
terms (:mod:`.evolve`); each is checked statically (:mod:`.static`) and run only in a shut-in process
(:mod:`.sandbox`), dry-run on recorded states, trained with PPO, scored on the task alone, and reflected on to
build the next prompt (:mod:`.prompts`, :mod:`.loop`). The winner is a reward file for ``env.reward``.
"""

from __future__ import annotations
