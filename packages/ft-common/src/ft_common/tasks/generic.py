"""generic: a user's own `{prompt, target}` (or `{input, output}`) JSONL task."""

from ft_common.tasks.base import Task

TASK = Task(name="generic", description="your own {input, output} JSONL with the special-token layout",
            meta={"label": "optional class label, for classification scoring"})
