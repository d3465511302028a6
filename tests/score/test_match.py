"""SQL result comparison: ft's rule, and `--match spider` against a verbatim copy of test-suite-sql-eval.

The UPSTREAM block below is taoyds/test-suite-sql-eval (Apache-2.0, commit e97acc5): exec_eval.py's
result_eq and its helpers, parse.py's remove_distinct, and the query handling of eval_exec_match and
evaluation.evaluate (keep_distinct and plug_value off, their defaults), copied as written apart from
running on one database file. ft_score.sql.match is a separate transcription; the tests hold the two
together on upstream's own example pairs (evaluation_examples/, flight_2) and on random results.
"""

import asyncio
import random
import re
import sqlite3
from collections import defaultdict
from itertools import product

import pytest
import sqlparse
from ft_score.sql import SqlChecker, output_names, parse_sql
from ft_score.sql.match import (
    match_results,
    results_match,
    spider_prepare,
    spider_remove_distinct,
    spider_result_eq,
)

# ---------------------------------------------------------------- UPSTREAM (verbatim)


def permute_tuple(element, perm):
    assert len(element) == len(perm)
    return tuple([element[i] for i in perm])


def unorder_row(row):
    return tuple(sorted(row, key=lambda x: str(x) + str(type(x))))


def quick_rej(result1, result2, order_matters):
    s1 = [unorder_row(row) for row in result1]
    s2 = [unorder_row(row) for row in result2]
    if order_matters:
        return s1 == s2
    else:
        return set(s1) == set(s2)


def multiset_eq(l1, l2):
    if len(l1) != len(l2):
        return False
    d = defaultdict(int)
    for e in l1:
        d[e] = d[e] + 1
    for e in l2:
        d[e] = d[e] - 1
        if d[e] < 0:
            return False
    return True


def get_constraint_permutation(tab1_sets_by_columns, result2):
    num_cols = len(result2[0])
    perm_constraints = [{i for i in range(num_cols)} for _ in range(num_cols)]
    if num_cols <= 3:
        return product(*perm_constraints)

    # we sample 20 rows and constrain the space of permutations
    for _ in range(20):
        random_tab2_row = random.choice(result2)

        for tab1_col in range(num_cols):
            for tab2_col in set(perm_constraints[tab1_col]):
                if random_tab2_row[tab2_col] not in tab1_sets_by_columns[tab1_col]:
                    perm_constraints[tab1_col].remove(tab2_col)
    return product(*perm_constraints)


def result_eq(result1, result2, order_matters):
    if len(result1) == 0 and len(result2) == 0:
        return True
    if len(result1) != len(result2):
        return False
    num_cols = len(result1[0])
    if len(result2[0]) != num_cols:
        return False
    if not quick_rej(result1, result2, order_matters):
        return False
    tab1_sets_by_columns = [{row[i] for row in result1} for i in range(num_cols)]
    for perm in get_constraint_permutation(tab1_sets_by_columns, result2):
        if len(perm) != len(set(perm)):
            continue
        if num_cols == 1:
            result2_perm = result2
        else:
            result2_perm = [permute_tuple(element, perm) for element in result2]
        if order_matters:
            if result1 == result2_perm:
                return True
        else:
            if set(result1) == set(result2_perm) and multiset_eq(result1, result2_perm):
                return True
    return False


def replace_cur_year(query):
    return re.sub(
        r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", "2020", query, flags=re.IGNORECASE
    )


def get_cursor_from_path(sqlite_path):
    connection = sqlite3.connect(sqlite_path)
    connection.text_factory = lambda b: b.decode(errors="ignore")
    cursor = connection.cursor()
    return cursor


async def exec_on_db_(sqlite_path, query):
    query = replace_cur_year(query)
    cursor = get_cursor_from_path(sqlite_path)
    try:
        cursor.execute(query)
        result = cursor.fetchall()
        cursor.close()
        cursor.connection.close()
        return "result", result
    except Exception as e:
        cursor.close()
        cursor.connection.close()
        return "exception", e


def postprocess(query):
    query = query.replace('> =', '>=').replace('< =', '<=').replace('! =', '!=')
    return query


def remove_distinct(s):
    toks = [t.value for t in list(sqlparse.parse(s)[0].flatten())]
    return ''.join([t for t in toks if t.lower() != 'distinct'])


def upstream_exec_match(db, p_line, g_line):
    """evaluation.evaluate's reading of one line each, then eval_exec_match on one database file."""
    p_str = p_line.strip().split('\t')[0]
    p_str = p_str.replace("value", "1")
    g_str = g_line.strip().split('\t')[0]
    p_str, g_str = postprocess(p_str), postprocess(g_str)
    p_str = remove_distinct(p_str)
    g_str = remove_distinct(g_str)
    order_matters = 'order by' in g_str.lower()
    g_flag, g_denotation = asyncio.run(exec_on_db_(db, g_str))
    p_flag, p_denotation = asyncio.run(exec_on_db_(db, p_str))
    assert g_flag != 'exception', 'gold query %s has error on database file %s' % (g_str, db)  # noqa: UP031 (verbatim)
    if p_flag == 'exception':
        return 0
    return 1 if result_eq(g_denotation, p_denotation, order_matters=order_matters) else 0


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def flight_2(tmp_path_factory):
    """A small database of Spider's flight_2 schema (the one upstream's examples use)."""
    root = tmp_path_factory.mktemp("spider")
    path = root / "flight_2" / "flight_2.sqlite"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE airlines (uid INTEGER PRIMARY KEY, Airline TEXT, Abbreviation TEXT, Country TEXT);
        CREATE TABLE airports (City TEXT, AirportCode TEXT PRIMARY KEY, AirportName TEXT, Country TEXT,
                               CountryAbbrev TEXT);
        CREATE TABLE flights (Airline INTEGER, FlightNo INTEGER, SourceAirport TEXT, DestAirport TEXT);
        INSERT INTO airlines VALUES (1, 'United Airlines', 'UAL', 'USA'), (2, 'US Airways', 'USAir', 'USA'),
            (3, 'Delta Airlines', 'Delta', 'USA'), (4, 'JetBlue Airways', 'JetBlue', 'USA'),
            (5, 'Virgin America', 'Virgin', 'USA'), (6, 'Lufthansa', 'LH', 'Germany');
        INSERT INTO airports VALUES ('Aberdeen', 'APG', 'Phillips AAF', 'United States', 'US'),
            ('Aberdeen', 'ABR', 'Municipal', 'United States', 'US'),
            ('Abilene', 'DYS', 'Dyess AFB', 'United States', 'US'),
            ('Anthony', 'ANY', 'Anthony', 'United States', 'US'),
            ('Alton', 'ALN', 'Alton', 'United States', 'US'),
            ('Akron', 'AKO', 'Akron', 'United States', 'US');
        INSERT INTO flights VALUES (1, 28, 'APG', 'ASY'), (1, 29, 'ASY', 'APG'), (1, 44, 'CVO', 'ACV'),
            (2, 45, 'APG', 'ABR'), (3, 54, 'ABR', 'ANY'), (3, 55, 'ANY', 'ABR'), (4, 90, 'AKO', 'APG'),
            (6, 91, 'ALN', 'APG'), (6, 92, 'APG', 'ALN');
    """)
    conn.commit()
    conn.close()
    return path


# (gold, prediction): pairs of upstream's evaluation_examples (gold.txt / predict.txt, flight_2) first,
# then the rules the two scorers differ on.
UPSTREAM_EXAMPLES = [
    ('SELECT * FROM AIRLINES', 'select * from airlines'),
    ('SELECT City ,  Country FROM AIRPORTS', 'select Country,City from airports'),
    ('SELECT Airline ,  Abbreviation FROM AIRLINES', 'select T1.Airline,T2.AirportName from airlines as T1 join airports as T2'),
    ('SELECT AirportName FROM AIRPORTS', 'select AirportName from airports'),
    ('SELECT Airline FROM AIRLINES', 'select Airline from airlines'),
    ('SELECT count(*) FROM AIRLINES', "select count(*) from airports where Country = 'terminal'"),
    ('SELECT Abbreviation FROM AIRLINES', 'select * from airlines'),
    ('SELECT AirportCode ,  AirportName FROM AIRPORTS WHERE city  =  "Anthony"',
     "select T1.Airline,T2.AirportName from airlines as T1 join airports as T2"),
    ('SELECT AirportName FROM AIRPORTS WHERE City = "Aberdeen"', "select AirportName from airports where AirportName = 'terminal'"),
    ('SELECT count(*) FROM FLIGHTS AS T1 JOIN AIRPORTS AS T2 ON T1.SourceAirport  =  T2.AirportCode WHERE T2.City  =  "Aberdeen"',
     "select count(*) from airports where Country = 'terminal'"),
]
RULE_CASES = [
    # DISTINCT: upstream removes it from both queries, COUNT(DISTINCT x) included.
    ("SELECT count(DISTINCT SourceAirport) FROM flights", "SELECT count(SourceAirport) FROM flights"),
    ("SELECT DISTINCT City FROM airports", "SELECT City FROM airports"),
    ("SELECT City FROM airports", "SELECT DISTINCT city FROM airports"),
    ("SELECT DISTINCT Country FROM airlines", "SELECT Country FROM airlines GROUP BY Country"),
    # ORDER BY: upstream keeps row order when "order by" appears anywhere in the gold query.
    ("SELECT Airline FROM airlines ORDER BY uid DESC", "SELECT Airline FROM airlines ORDER BY uid"),
    ("SELECT Airline FROM (SELECT * FROM airlines ORDER BY uid DESC)", "SELECT Airline FROM airlines"),
    ("SELECT Airline FROM airlines ORDER BY uid", "SELECT Airline FROM airlines ORDER  BY uid DESC"),
    ("SELECT Airline FROM airlines ORDER  BY uid DESC", "SELECT Airline FROM airlines ORDER BY uid"),
    # Columns: any order upstream; ft pairs named columns by name.
    ("SELECT Airline, uid FROM airlines", "SELECT uid, Airline FROM airlines"),
    ("SELECT min(uid) AS lo, max(uid) AS hi FROM airlines", "SELECT max(uid) AS lo, min(uid) AS hi FROM airlines"),
    ("SELECT min(uid), max(uid) FROM airlines", "SELECT max(uid), min(uid) FROM airlines"),
    ("SELECT City, Country, AirportCode, AirportName FROM airports",
     "SELECT AirportName, AirportCode, Country, City FROM airports"),
    # Values: exact upstream, within 1e-6 in ft; ints equal floats in both.
    ("SELECT avg(FlightNo) FROM flights", "SELECT sum(FlightNo) * 1.0 / count(*) FROM flights"),
    ("SELECT 0.1 + 0.2", "SELECT 0.3"),
    ("SELECT count(*) FROM flights", "SELECT count(*) * 1.0 FROM flights"),
    # Rewrites: "value" -> "1" in the prediction, "> =" rejoined, YEAR(CURDATE()) -> 2020.
    ("SELECT Airline FROM airlines WHERE uid = 1", "SELECT Airline FROM airlines WHERE uid = value"),
    ("SELECT Airline FROM airlines WHERE uid >= 5", "SELECT Airline FROM airlines WHERE uid > = 5"),
    ("SELECT 2020 - 2000", "SELECT YEAR(CURDATE()) - 2000"),
    # Failures and empties.
    ("SELECT Airline FROM airlines WHERE uid > 99", "SELECT City FROM airports WHERE City = 'nowhere'"),
    ("SELECT Airline FROM airlines", "SELECT nope FROM airlines"),
    ("SELECT Airline FROM airlines", "SELECT Airline\nFROM airlines"),
]


def checker_verdict(checker, db, gold, pred):
    record = {"id": "spider/x", "completion": pred,
              "meta": {"reference": gold, "db_id": db.parent.name, "db_dir": str(db.parent.parent)}}
    return checker.score(record)


@pytest.fixture(scope="module")
def spider_checker():
    with SqlChecker(match="spider") as c:
        yield c


@pytest.mark.parametrize("gold, pred", UPSTREAM_EXAMPLES + RULE_CASES)
def test_spider_mode_agrees_with_upstream(flight_2, spider_checker, gold, pred):
    score = checker_verdict(spider_checker, flight_2, gold, pred)
    assert score["execution"] == bool(upstream_exec_match(str(flight_2), pred.replace("\n", " "), gold))
    assert score["correct"] == score["execution"] and "ft_execution" in score


# ft's verdict (the default) on the same pairs, where it differs from upstream, and why.
FT_DIFFERS = {
    ("SELECT count(DISTINCT SourceAirport) FROM flights", "SELECT count(SourceAirport) FROM flights"): False,  # 6 vs 9
    ("SELECT DISTINCT City FROM airports", "SELECT City FROM airports"): False,  # duplicates count
    ("SELECT City FROM airports", "SELECT DISTINCT city FROM airports"): False,
    ("SELECT DISTINCT Country FROM airlines", "SELECT Country FROM airlines GROUP BY Country"): True,  # 2 rows
    ("SELECT Airline FROM (SELECT * FROM airlines ORDER BY uid DESC)", "SELECT Airline FROM airlines"): True,
    ("SELECT Airline FROM airlines ORDER  BY uid DESC", "SELECT Airline FROM airlines ORDER BY uid"): False,
    ("SELECT min(uid) AS lo, max(uid) AS hi FROM airlines", "SELECT max(uid) AS lo, min(uid) AS hi FROM airlines"): False,
    ("SELECT avg(FlightNo) FROM flights", "SELECT sum(FlightNo) * 1.0 / count(*) FROM flights"): True,
    ("SELECT 0.1 + 0.2", "SELECT 0.3"): True,
    ("SELECT Airline FROM airlines WHERE uid = 1", "SELECT Airline FROM airlines WHERE uid = value"): False,
    ("SELECT Airline FROM airlines WHERE uid >= 5", "SELECT Airline FROM airlines WHERE uid > = 5"): False,
    ("SELECT 2020 - 2000", "SELECT YEAR(CURDATE()) - 2000"): False,
}


def test_ft_default_and_where_it_differs(flight_2):
    with SqlChecker() as ft, SqlChecker(match="spider") as spider:
        differ = 0
        for gold, pred in UPSTREAM_EXAMPLES + RULE_CASES:
            ft_score = checker_verdict(ft, flight_2, gold, pred)
            spider_score = checker_verdict(spider, flight_2, gold, pred)
            assert spider_score["ft_execution"] == ft_score["execution"]
            upstream = bool(spider_score["execution"])
            expected = FT_DIFFERS.get((gold, pred), upstream)
            assert bool(ft_score["correct"]) == expected, (gold, pred)
            differ += expected != upstream
        assert differ == len(FT_DIFFERS) - 1  # avg vs sum * 1.0 / count: the same float, exactly


def test_column_order_is_free_in_ft_and_reported(flight_2):
    with SqlChecker() as ft:
        s = checker_verdict(ft, flight_2, "SELECT City, Country FROM airports", "SELECT Country, City FROM airports")
        assert s["correct"] and s["columns_reordered"] is True
        s = checker_verdict(ft, flight_2, "SELECT City, Country FROM airports", "SELECT City, Country FROM airports")
        assert s["correct"] and "columns_reordered" not in s
        s = checker_verdict(ft, flight_2, "SELECT City, Country FROM airports ORDER BY AirportCode",
                            "SELECT Country, City FROM airports ORDER BY AirportCode")
        assert s["correct"]
        s = checker_verdict(ft, flight_2, "SELECT City, Country FROM airports ORDER BY AirportCode",
                            "SELECT Country, City FROM airports ORDER BY AirportName")
        assert not s["correct"] and s["failure"] == "wrong_result"


# ---------------------------------------------------------------- the functions


def test_remove_distinct_is_upstreams():
    for query in ["SELECT DISTINCT a FROM t", "select count(distinct a), Distinct(b) from t",
                  "SELECT 'distinct' FROM t", 'SELECT "DISTINCT" FROM t', "SELECT distinct_count FROM t",
                  "SELECT a FROM t -- distinct", "SELECT t.distinct FROM t"]:
        assert spider_remove_distinct(query) == remove_distinct(query)
    assert spider_remove_distinct("SELECT count(DISTINCT a) FROM t") == "SELECT count( a) FROM t"
    assert spider_remove_distinct("") == ""


def test_prepare():
    pred, gold, order = spider_prepare("SELECT DISTINCT value\nFROM t WHERE a > = 1 ", "SELECT a FROM t ORDER BY a")
    assert pred == "SELECT  1 FROM t WHERE a >= 1" and gold == "SELECT a FROM t ORDER BY a" and order
    assert spider_prepare("SELECT a FROM t", "SELECT a FROM t ORDER\nBY a")[2]  # one line, as upstream's files hold it
    assert not spider_prepare("SELECT a FROM t", "SELECT a FROM t ORDER  BY a")[2]  # two spaces: not "order by"
    assert spider_prepare("SELECT a", "SELECT a FROM (SELECT a FROM t ORDER BY a)")[2]
    assert spider_prepare("SELECT DISTINCT a", "SELECT DISTINCT a", keep_distinct=True)[0] == "SELECT DISTINCT a"


def random_result(rng, rows, cols):
    pool = [0, 1, 2, 1.0, 2.5, "a", "b", "1", "1.0", None]  # "1.0" vs 1: upstream's row sort by str(x)+type
    return [tuple(rng.choice(pool) for _ in range(cols)) for _ in range(rows)]


def variants(rng, result):
    """Results that may or may not equal `result`: permuted columns, shuffled or changed rows."""
    cols = len(result[0]) if result else 0
    perm = list(range(cols))
    rng.shuffle(perm)
    permuted = [tuple(r[i] for i in perm) for r in result]
    shuffled = permuted[:]
    rng.shuffle(shuffled)
    changed = [tuple(r) for r in shuffled]
    if changed:
        i = rng.randrange(len(changed))
        changed[i] = tuple(rng.choice([0, 1, "a", None]) for _ in range(cols))
    as_floats = [tuple(float(v) if type(v) is int else v for v in r) for r in shuffled]  # SQLite: 1 vs 1.0
    return [result, permuted, shuffled, changed, shuffled[:-1], shuffled + shuffled[:1], as_floats,
            random_result(rng, len(result), cols)]


def test_result_eq_matches_upstream_on_random_results():
    rng = random.Random(15)
    seen = {True: 0, False: 0}
    for _ in range(1500):
        result1 = random_result(rng, rng.randint(0, 5), rng.randint(1, 5))
        for result2 in variants(rng, result1):
            if result2 and len(result2[0]) != (len(result1[0]) if result1 else 0):
                continue
            for order_matters in (False, True):
                want = result_eq(result1, result2, order_matters)
                assert spider_result_eq(result1, result2, order_matters) == want, (result1, result2, order_matters)
                seen[want] += 1
    assert seen[True] > 5000 and seen[False] > 5000, seen


def test_result_eq_on_wide_results_with_repeated_columns():
    row = tuple(range(7))
    wide = [row, tuple(reversed(row)), row]
    swapped = [tuple(r[i] for i in (6, 5, 4, 3, 2, 1, 0)) for r in wide]
    assert spider_result_eq(wide, swapped, False) == result_eq(wide, swapped, False) is True
    same = [(1,) * 8] * 4  # every column order is a candidate: one is tried
    assert spider_result_eq(same, same, True) and match_results(same, same, True) == tuple(range(8))


def test_match_results_ft_rule():
    want = [(1, "a"), (2, "b")]
    assert match_results([(1, "a"), (2, "b")], want) == (0, 1)
    assert match_results([("b", 2), ("a", 1)], want) == (1, 0)
    assert match_results([("b", 2.0000000001), ("a", 1)], want) == (1, 0)  # tolerance survives reordering
    assert match_results([("a", 1), ("b", 2)], want, ordered=True) == (1, 0)
    assert match_results([("b", 2), ("a", 1)], want, ordered=True) is None
    assert match_results([(1, "a"), (1, "a")], want) is None
    assert match_results([(1,), (2,)], want) is None
    assert match_results([], []) == () and match_results([], want) is None
    # Named columns are paired by name: the swapped labels do not pass.
    assert match_results([(5, 1)], [(1, 5)], got_names=["lo", "hi"], want_names=["hi", "lo"]) == (1, 0)
    assert match_results([(5, 1)], [(1, 5)], got_names=["lo", "hi"], want_names=["lo", "hi"]) is None
    assert match_results([(5, 1)], [(1, 5)], got_names=["HI", "lo"], want_names=["lo", "hi"]) == (1, 0)
    # Names that do not pair every column leave any order open.
    assert match_results([(5, 1)], [(1, 5)], got_names=[None, None], want_names=["lo", "hi"]) == (1, 0)
    assert match_results([(5, 1)], [(1, 5)], got_names=["a", "a"], want_names=["a", "b"]) == (1, 0)
    assert results_match([(1, "a")], [("a", 1)]) is False  # the positional comparison stays available


def test_output_names():
    assert output_names(parse_sql("SELECT T1.name, age AS a, count(*), * FROM t AS T1")) == ["name", "a", None, None]
    assert output_names(parse_sql("SELECT a FROM t UNION SELECT b FROM u")) == ["a"]
    assert output_names(None) is None
