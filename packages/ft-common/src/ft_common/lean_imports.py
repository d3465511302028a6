"""Keep transformers from importing packages a causal LM's training and decoding never use.

transformers imports torchvision, scipy (its detection losses) and, in some versions,
scikit-learn whenever they are installed, as GPU images usually have them: about 6 s of
every run's start on the lent H100 host (docs/benchmarks.md, "seconds before the first
step"). A None in sys.modules is Python's own way to mark a module unimportable:
importlib.util.find_spec answers None, so transformers finds them absent, and an import
raises ImportError, which every optional import handles.

Only our commands' own processes call hide_unused (ft-train, and its Ray Train workers' entry;
ft-infer where the hf engine runs in its process), never at import, so a program that imports
ft's packages keeps its scipy.
"""

from __future__ import annotations

import sys

UNUSED = ("torchvision", "scipy", "sklearn")


def hide_unused(names: tuple[str, ...] = UNUSED) -> list[str]:
    """Mark each of `names` not yet imported as unimportable in this process; the names hidden."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None
    return hidden
