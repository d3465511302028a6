"""One secret scrubber for every error path: the one-line error and the -v traceback.

An endpoint may echo what it was sent (an `Authorization: Bearer ...` header in a 401 body),
and client libraries put that body in their exception text, so any error text can hold a
key. `scrub(text)` replaces, before anything reaches stderr or a file:

- the values of environment variables that name a secret (OPENAI_API_KEY and any other
  *_API_KEY, *_TOKEN, *_SECRET*, *_PASSWORD...), when at least MIN_LENGTH characters long;
- values given on the command line to an option that names one (--api-key X, --token=X);
- values registered with `register()` (a key a command read from somewhere else);
- `Bearer <token>`, `sk-...` style OpenAI keys, and the password of a URL
  (https://user:PASSWORD@host).
"""

from __future__ import annotations

import os
import re
import sys

MASK = "***"
MIN_LENGTH = 6  # shorter values ("none", "EMPTY", "1") would mask ordinary words

# Environment names whose value is a secret.
SECRET_ENV = re.compile(r"(API_?KEY|ACCESS_KEY)$|(^|_)(TOKEN|SECRET|PASSWORD|PASSWD)(_|$)", re.IGNORECASE)
# Command-line options whose value is a secret: --api-key, --openai-key, --token, --password ...
SECRET_OPTION = re.compile(r"^--?[\w-]*(key|token|secret|password|passwd)$", re.IGNORECASE)

PATTERNS = (
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1\2" + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), MASK),
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@"), r"\1" + MASK + "@"),
    (re.compile(r"(?i)([?&](?:api[_-]?key|access[_-]?token|token|key)=)[^&\s'\"]+"), r"\1" + MASK),
)

_registered: set[str] = set()


def register(value: str | None) -> None:
    """Scrub `value` from every later error message (a key read from a file or a prompt)."""
    if value and len(value) >= MIN_LENGTH:
        _registered.add(value)


def secret_values() -> list[str]:
    """Every known secret value, longest first (so a key that contains another goes whole)."""
    values = set(_registered)
    values.update(v for k, v in os.environ.items() if SECRET_ENV.search(k))
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if not SECRET_OPTION.match(name):
            continue
        if eq:
            values.add(value)
        elif i + 1 < len(argv):
            values.add(argv[i + 1])
    return sorted((v for v in values if len(v) >= MIN_LENGTH), key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` with every secret value and secret-looking pattern replaced by ***."""
    if not text:
        return text
    for value in secret_values():
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text
