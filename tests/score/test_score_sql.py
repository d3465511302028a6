"""SQL checker: extraction, result comparison, exact/AST metrics, failure classes, both engines."""

import sqlite3

import pytest
from ft_score.sql import (
    SqlChecker,
    ast_equivalent,
    is_ordered,
    normalize_sql,
    parse_sql,
    results_match,
    values_equal,
)
from ft_score.sql.sandbox import Limits

TABLES = {
    "head": {"columns": [["name", "VARCHAR"], ["born_state", "VARCHAR"], ["age", "INTEGER"]],
             "rows": [["Ann", "California", 56], ["Bob", "Alabama", 67], ["Cid", "California", 45],
                      ["Dee", "Texas", 70]]},
}
# The case study's example (sql-create-context): "How many heads of the departments are older than 56 ?"
REF = "SELECT COUNT(*) FROM head WHERE age > 56"


@pytest.fixture(params=["sqlite", "sqlglot"], scope="module")
def checker(request):
    with SqlChecker(engine=request.param, limits=Limits(timeout=1.0)) as c:
        yield c


def score(checker, completion, reference=REF, tables=TABLES, **meta):
    return checker.score({"id": "sql/valid/3", "completion": completion,
                          "meta": {"reference": reference, "tables": tables, **meta}})


def test_case_study_example_and_equivalent_query(checker):
    s = score(checker, "SELECT COUNT(*) FROM head WHERE age > 56")
    assert s["correct"] and s["exact"] and s["ast_equal"] and s["execution"] and s["checked_by"] == "tables"
    s = score(checker, "select count(name) from head where 56 < age")
    assert s["correct"] and not s["exact"] and not s["ast_equal"]


def test_extraction_from_tags_fences_and_stop_token(checker):
    assert score(checker, "Here you go: <SQL>SELECT COUNT(*) FROM head WHERE age > 56;</SQL>")["correct"]
    assert score(checker, "```sql\nSELECT COUNT(*) FROM head WHERE age > 56\n```")["correct"]
    assert score(checker, "SELECT COUNT(*) FROM head WHERE age > 56<END_A>DROP TABLE head")["correct"]


def test_wrong_result_and_order_sensitivity(checker):
    s = score(checker, "SELECT COUNT(*) FROM head WHERE age >= 56")
    assert not s["correct"] and s["failure"] == "wrong_result" and s["execution"] is False
    unordered = "SELECT name FROM head WHERE born_state = 'California'"
    assert score(checker, "SELECT name FROM head WHERE born_state = 'California' ORDER BY name DESC", unordered)["correct"]
    ordered = "SELECT name FROM head ORDER BY age"
    assert score(checker, "SELECT name FROM head ORDER BY age", ordered)["correct"]
    assert score(checker, "SELECT name FROM head ORDER BY age DESC", ordered)["failure"] == "wrong_result"


def test_failure_classes(checker):
    assert score(checker, "SELEC name FROM head")["failure"] == "unparsable"
    assert score(checker, "")["failure"] == "unparsable"
    assert score(checker, "SELECT nope FROM head")["failure"] == "execution_error"
    assert score(checker, "SELECT COUNT(*) FROM head WHERE age > 56", "SELECT broken FROM nowhere")["failure"] == "bad_reference"
    cross = ", ".join(f"head h{i}" for i in range(16))  # 4**16 rows
    s = score(checker, f"SELECT COUNT(*) FROM {cross} WHERE h0.age + h15.age > 0")
    assert s["failure"] == "timeout" and not s["correct"]


def test_lowercase_option_matches_case_study():
    with SqlChecker(lowercase=True) as c:
        s = score(c, "SELECT name FROM head WHERE born_state = 'california'",
                  "SELECT name FROM head WHERE born_state = 'California'")
        assert s["correct"] and s["exact"]
    with SqlChecker() as c:
        s = score(c, "SELECT name FROM head WHERE born_state = 'california'",
                  "SELECT name FROM head WHERE born_state = 'California'")
        assert not s["correct"] and s["failure"] == "wrong_result"


def test_float_tolerance_and_multiset_comparison():
    assert values_equal(0.1 + 0.2, 0.3) and values_equal(3, 3.0) and values_equal("3.5", 3.5)
    assert not values_equal(0.3, 0.31) and not values_equal("a", "A") and not values_equal(None, 0)
    assert results_match([(1, "a"), (2, "b")], [(2, "b"), (1, "a")])
    assert not results_match([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], ordered=True)
    assert not results_match([(1,), (1,)], [(1,), (2,)])  # multisets, not sets
    assert not results_match([(1, 2)], [(1,)])
    assert results_match([(None, 1.0000000001)], [(None, 1)])


def test_ast_helpers():
    assert normalize_sql("SELECT  a\nFROM t ;") == "SELECT a FROM t"
    assert ast_equivalent(parse_sql("select A from T"), parse_sql("SELECT a FROM t"))
    assert not ast_equivalent(parse_sql("select a from t"), parse_sql("SELECT b FROM t"))
    assert parse_sql("SELEC x") is None and parse_sql("((((") is None and parse_sql("SELECT 1; DROP TABLE t") is None
    assert is_ordered("SELECT a FROM t ORDER BY a", parse_sql("SELECT a FROM t ORDER BY a"))
    assert not is_ordered("SELECT a FROM (SELECT a FROM t ORDER BY a)", parse_sql("SELECT a FROM (SELECT a FROM t ORDER BY a)"))


def test_record_without_tables_is_judged_by_ast():
    with SqlChecker() as c:
        s = c.score({"id": "x", "completion": "select count(*) from HEAD where age > 56", "meta": {"reference": REF}})
        assert s["correct"] and s["checked_by"] == "ast" and s["execution"] is None


def test_real_database(tmp_path):
    db = tmp_path / "concert" / "concert.sqlite"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE singer (name TEXT, age INT, country TEXT)")
    conn.executemany("INSERT INTO singer VALUES (?, ?, ?)", [("Joe", 52, "France"), ("Rose", 41, "France"), ("Tim", 29, "USA")])
    conn.commit()
    conn.close()
    meta = {"reference": "SELECT avg(age) FROM singer WHERE country = 'France'", "db_id": "concert", "db_dir": str(tmp_path)}
    with SqlChecker(lowercase=True) as c:
        s = c.score({"id": "spider/0", "completion": "SELECT AVG(age) FROM singer WHERE country = 'France'", "meta": meta})
        assert s["correct"] and s["checked_by"] == "database"
        s = c.score({"id": "spider/1", "completion": "SELECT AVG(age) FROM singer", "meta": meta})
        assert s["failure"] == "wrong_result"


def test_missing_database_is_an_input_error(tmp_path):
    from ft_common.errors import InputError

    with SqlChecker() as c, pytest.raises(InputError, match="spider/7.*cannot open database"):
        c.score({"id": "spider/7", "completion": "SELECT 1",
                 "meta": {"reference": "SELECT 1", "db_id": "nope", "db_dir": str(tmp_path)}})


def test_empty_tables_and_db_dir_override(checker, tmp_path):
    empty = {"t": {"columns": [["a", "INTEGER"]], "rows": []}}
    assert score(checker, "SELECT count(*) FROM t", "SELECT COUNT(*) FROM t", tables=empty)["correct"]
    db = tmp_path / "x" / "x.sqlite"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (a INT)")
    conn.commit()
    conn.close()
    with SqlChecker(db_dir=str(tmp_path)) as c:
        s = c.score({"id": "s", "completion": "SELECT a FROM t", "meta": {
            "reference": "SELECT a FROM t", "db_id": "x", "db_dir": "/nonexistent"}})
        assert s["correct"] and s["checked_by"] == "database"


@pytest.mark.parametrize("completion, failure", [
    ("", "unparsable"),
    ("SELECT (((((name FROM head", "unparsable"),
    ("SELECT " + "x" * 10_000, None),
    ("SELECT name FROM head WHERE " + " OR ".join(["age > 1"] * 1500), None),
    ("((((" * 2500, "unparsable"),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", None),
])
def test_adversarial_sql_completions_get_a_score(checker, completion, failure):
    s = score(checker, completion)
    assert s["correct"] is False and s["failure"] in {"unparsable", "execution_error", "timeout", "wrong_result"}
    if failure:
        assert s["failure"] == failure
