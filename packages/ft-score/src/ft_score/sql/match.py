"""Comparing two SQL result sets: ft's rule, and test-suite-sql-eval's (`--match spider`).

ft's rule (`match_results`, the default):

- rows compare as a multiset, or as a sequence when the reference has a
  top-level ORDER BY (an ORDER BY inside a subquery does not order the result);
- columns may come in any order: a generated `SELECT age, name` answers a
  reference `SELECT name, age`. The one thing the reference fixes is which
  column is which when it *names* them: if both queries name every column
  (plain column references or aliases), the names are distinct and they are
  the same set, the columns are paired by name and no other order is tried,
  so `SELECT max(a) AS lo, min(a) AS hi` does not pass for `SELECT min(a) AS
  lo, max(a) AS hi`;
- numbers compare with a relative tolerance of 1e-6, and a number equals a
  string that reads as the same number (SQLite's type affinity);
- DISTINCT is kept: `COUNT(DISTINCT x)` and `COUNT(x)` are different answers.

test-suite-sql-eval's rule (Zhong et al. 2020, taoyds/test-suite-sql-eval,
exec_eval.py, transcribed below and checked against a verbatim copy in
tests/score/test_match.py): the same bag-of-rows idea with exact Python
equality, any column order (no name rule), row order kept whenever the
string `order by` appears anywhere in the gold query, and every `DISTINCT`
token removed from both queries before they run, including the one inside
`COUNT(DISTINCT x)`. `spider_prepare` applies its query rewrites.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence

# ---------------------------------------------------------------- ft's rule

# Column orders tried at most, for results whose columns all hold the same values.
MAX_COLUMN_ORDERS = 10_000


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def values_equal(a, b, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    if a == b:
        return True
    if _is_number(a) and isinstance(b, str) or _is_number(b) and isinstance(a, str):
        try:
            a, b = float(a), float(b)
        except ValueError:
            return False
    if _is_number(a) and _is_number(b):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    return False


def _value_key(v) -> tuple:
    if v is None:
        return (0, 0.0, "")
    if _is_number(v):
        return (1, round(float(v), 6), "")
    return (2, 0.0, str(v))


def _sort_key(row: Sequence) -> tuple:
    return tuple(_value_key(v) for v in row)


def results_match(got: list[tuple], want: list[tuple], ordered: bool = False) -> bool:
    """Same rows, columns by position (as a multiset, or as a sequence when `ordered`), floats within tolerance."""
    if len(got) != len(want):
        return False
    if not ordered:
        got, want = sorted(got, key=_sort_key), sorted(want, key=_sort_key)
    for a, b in zip(got, want, strict=True):
        if len(a) != len(b) or not all(values_equal(x, y) for x, y in zip(a, b, strict=True)):
            return False
    return True


def _same_values(a: list, b: list) -> bool:
    """Two columns hold the same multiset of values (within tolerance)."""
    a, b = sorted(a, key=_value_key), sorted(b, key=_value_key)
    return all(values_equal(x, y) for x, y in zip(a, b, strict=True))


def _orders(candidates: list[list[int]], columns: list[tuple], limit: int | None) -> Iterator[tuple[int, ...]]:
    """Injective assignments perm[i] in candidates[i], the identity first when it is allowed.

    Two identical candidate columns give the same result, so only the first unused one is tried.
    """
    n, chosen, used, tried = len(candidates), [], set(), [0]

    def walk(i: int) -> Iterator[tuple[int, ...]]:
        if limit is not None and tried[0] >= limit:
            return
        if i == n:
            tried[0] += 1
            yield tuple(chosen)
            return
        seen = set()
        ordered = sorted(candidates[i], key=lambda j: (j != i, j))  # the column already in place first
        for j in ordered:
            if j in used or columns[j] in seen:
                continue
            seen.add(columns[j])
            chosen.append(j)
            used.add(j)
            yield from walk(i + 1)
            chosen.pop()
            used.discard(j)

    yield from walk(0)


def _by_name(got_names: Sequence[str | None] | None, want_names: Sequence[str | None] | None,
             width: int) -> tuple[int, ...] | None:
    """got's column for each of want's, paired by name, when the names pair them unambiguously."""
    if not got_names or not want_names or len(got_names) != width or len(want_names) != width:
        return None
    if any(n is None for n in got_names) or any(n is None for n in want_names):
        return None
    got_l, want_l = [n.lower() for n in got_names], [n.lower() for n in want_names]
    if len(set(got_l)) != width or set(got_l) != set(want_l):
        return None
    return tuple(got_l.index(n) for n in want_l)


def match_results(got: list[tuple], want: list[tuple], ordered: bool = False,
                  got_names: Sequence[str | None] | None = None,
                  want_names: Sequence[str | None] | None = None) -> tuple[int, ...] | None:
    """ft's rule: the column order of `got` that makes it equal `want` (identity first), or None.

    `got_names`/`want_names` are the queries' output column names (None for an
    unnamed expression); when they pair the columns, only that order is tried.
    """
    if len(got) != len(want):
        return None
    if not want:
        return ()  # two empty results: nothing to compare, columns included
    width = len(want[0])
    if any(len(r) != width for r in got) or any(len(r) != width for r in want):
        return None
    identity = tuple(range(width))
    named = _by_name(got_names, want_names, width)
    if named is not None:
        perms: Iterator[tuple[int, ...]] = iter([named])
    elif results_match(got, want, ordered):
        return identity
    else:
        got_cols = [tuple(r[j] for r in got) for j in range(width)]
        want_cols = [tuple(r[i] for r in want) for i in range(width)]
        # A column of want can only come from a column of got holding the same values.
        candidates = [[j for j in range(width) if _same_values(list(got_cols[j]), list(want_cols[i]))]
                      for i in range(width)]
        if any(not c for c in candidates):
            return None
        perms = (p for p in _orders(candidates, got_cols, MAX_COLUMN_ORDERS) if p != identity)
    for perm in perms:
        rows = got if perm == identity else [tuple(r[j] for j in perm) for r in got]
        if results_match(rows, want, ordered):
            return perm
    return None


# ---------------------------------------------------------------- test-suite-sql-eval's rule

_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)


def spider_postprocess(query: str) -> str:
    """exec_eval.postprocess: rejoin `> =`, `< =`, `! =`."""
    return query.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")


def spider_replace_cur_year(query: str) -> str:
    """exec_eval.replace_cur_year, applied to every query it runs."""
    return _CUR_YEAR.sub("2020", query)


def spider_remove_distinct(query: str) -> str:
    """parse.remove_distinct: drop every sqlparse token spelled `distinct` (any case)."""
    from ft_common.errors import require_module

    sqlparse = require_module("sqlparse", "ft-score", "spider")
    try:
        statements = sqlparse.parse(query)
    except Exception:  # upstream would stop; a query sqlparse cannot read is left as written
        return query
    if not statements:  # "" (upstream never sees one: an empty line ends a session there)
        return query
    return "".join(t.value for t in statements[0].flatten() if t.value.lower() != "distinct")


def spider_prepare(pred: str, gold: str, keep_distinct: bool = False) -> tuple[str, str, bool]:
    """The queries test-suite-sql-eval runs, and whether row order matters.

    evaluation.evaluate reads one prediction per line (so line breaks become
    spaces here, and the line is stripped) and replaces "value" with "1" in it;
    eval_exec_match then post-processes both, strips DISTINCT unless
    `keep_distinct` (its --keep_distinct, off by default), and keeps row order
    when "order by" appears anywhere in the lower-cased gold query.
    """
    pred = re.sub(r"[\r\n\t]", " ", pred).strip().replace("value", "1")
    gold = re.sub(r"[\r\n\t]", " ", gold).strip()
    pred, gold = spider_postprocess(pred), spider_postprocess(gold)
    if not keep_distinct:
        pred, gold = spider_remove_distinct(pred), spider_remove_distinct(gold)
    order_matters = "order by" in gold.lower()
    return spider_replace_cur_year(pred), spider_replace_cur_year(gold), order_matters


def _unorder_row(row: tuple) -> tuple:
    return tuple(sorted(row, key=lambda x: str(x) + str(type(x))))


def _quick_rej(result1: list[tuple], result2: list[tuple], order_matters: bool) -> bool:
    s1 = [_unorder_row(row) for row in result1]
    s2 = [_unorder_row(row) for row in result2]
    return s1 == s2 if order_matters else set(s1) == set(s2)


def spider_result_eq(result1: list[tuple], result2: list[tuple], order_matters: bool) -> bool:
    """exec_eval.result_eq(gold rows, predicted rows, order_matters), deterministically.

    Upstream narrows the column permutations by sampling 20 random rows; every
    permutation it drops cannot match, and the same holds for the ones dropped
    here by looking at all rows, so the answer is the same without the randomness.
    """
    result1, result2 = [tuple(r) for r in result1], [tuple(r) for r in result2]
    if len(result1) == 0 and len(result2) == 0:
        return True
    if len(result1) != len(result2):
        return False
    num_cols = len(result1[0])
    if len(result2[0]) != num_cols:
        return False
    if not _quick_rej(result1, result2, order_matters):
        return False
    tab1_sets = [{row[i] for row in result1} for i in range(num_cols)]
    tab2_cols = [tuple(row[j] for row in result2) for j in range(num_cols)]
    candidates = [[j for j in range(num_cols) if set(tab2_cols[j]) <= tab1_sets[i]] for i in range(num_cols)]
    if any(not c for c in candidates):
        return False
    rows1 = Counter(result1)
    for perm in _orders(candidates, tab2_cols, None):
        result2_perm = result2 if num_cols == 1 else [tuple(row[j] for j in perm) for row in result2]
        if order_matters:
            if result1 == result2_perm:
                return True
        elif Counter(result2_perm) == rows1:  # upstream: set equality, then multiset_eq
            return True
    return False
