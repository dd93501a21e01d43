"""The files of a run directory, by name, for code that reads runs without torch (the CLI, the benchmarks).

:mod:`rlctl.runs` loads what these files hold; the README's "run directory" section says what each is.
"""

CHECKPOINT = "checkpoint.pt"
KEPT = "checkpoints"
"""where ``run.keep_checkpoints`` keeps a copy of each checkpoint, named by its step"""
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
FINAL_EVAL = "final_eval.json"
BEST_LEARNER = "best_learner.pt"
"""with a baseline and ``arbiter.eval_every``: the learner alone at its best evaluation so far (a checkpoint that
``rlctl eval`` and ``rlctl export`` take in place of the run directory)"""
RESUMES = "resumes.jsonl"
"""one ``{"step", "time"}`` line per ``--resume`` of the run: its wall time then spans an interruption and work
done twice, so benchmarks leave it out of timings (:func:`rlctl.runs.was_resumed`)"""
