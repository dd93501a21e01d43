"""Split py-spy's raw samples inside ``Collector.collect`` by the function (and line) the collector called."""

import collections
import inspect
import re
import sys

from rlctl.agents.fast_inference import NumpyActorCritic


def _step_line(text: str) -> str:
    """A pattern for the py-spy frame of the line of ``NumpyActorCritic.step`` that contains ``text``."""
    lines, first = inspect.getsourcelines(NumpyActorCritic.step)
    (at,) = [first + i for i, line in enumerate(lines) if text in line]
    return rf"fast_inference\.py:{at}\)"


GROUPS = [  # (label, pattern on the frame directly below collect, pattern on the frame below that or None)
    ("vector env step: the simulator and its wrappers (below Snapshot.step)", r"SyncVectorEnv\.step",
     r"Snapshot\.step"),
    ("vector env step: gymnasium's own work (info merging, copies)", r"SyncVectorEnv\.step", None),
    ("policy: Gaussian noise from torch's generator", r"NumpyActor\.act", _step_line("torch.randn")),
    ("policy: actor forward", r"NumpyActor\.act", _step_line("_forward(self.actor")),
    ("policy: critic forward", r"NumpyActor\.act", _step_line("_forward(self.critic")),
    ("policy: log-prob, clipping, normalization", r"NumpyActor\.act", None),
    ("rollout writes (_RowWriter)", r"_RowWriter", None),
    ("space adapter (obs, to_env)", r"SpaceAdapter", None),
    ("the collector's own lines and NumPy calls", r".", None),
]


def main(path: str) -> None:
    counts: collections.Counter[str] = collections.Counter()
    with open(path) as fh:
        lines = fh.read().splitlines()
    for line in lines:
        m = re.match(r"(.*) (\d+)$", line)
        if not m:
            continue
        frames = m.group(1).split(";")
        at = [i for i, f in enumerate(frames) if f.startswith("Collector.collect (")]
        if not at:
            continue
        below = [*frames[at[-1] + 1:at[-1] + 3], "", ""]
        for label, first, second in GROUPS:
            if re.search(first, below[0] or "<self>") and (second is None or re.search(second, below[1])):
                counts[label] += int(m.group(2))
                break
    total = sum(counts.values())
    print(f"py-spy samples inside Collector.collect: {total}")
    for label, _, _ in GROUPS:
        print(f"{100 * counts[label] / total:5.1f}%  {label}")


if __name__ == "__main__":
    main(sys.argv[1])
