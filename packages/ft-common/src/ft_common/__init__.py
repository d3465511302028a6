"""ft-common: what every ft command shares.

The record schema (`records`), streaming JSONL (`jsonl`), error classes
(`errors`), the click layer (`cli`), atomic writes (`atomic`), stderr progress
(`progress`), the task definitions (`tasks`) and the model resolver (`models`).
"""

from ft_common.errors import FtError, InputError, MissingExtraError, UsageError
from ft_common.records import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "FtError", "InputError", "MissingExtraError", "UsageError"]
__version__ = "0.1.0"
