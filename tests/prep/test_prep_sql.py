"""The SQL task: building rows from WikiSQL and Spider, type checks, test tables, files, the LLM path."""

import json
import sqlite3
from pathlib import Path

import pytest
import sqlglot
from fake_openai import QuietHandler, chat_completion, read_json, send_json, serve
from ft_prep.sql import context_schema
from ft_prep.sql.build import SqlDrop, build, wikisql_column, wikisql_sql
from ft_prep.sql.tables import synthetic_tables
from sqlglot import exp
from sqlglot.executor import execute


def run_on_tables(reference: str, tables: dict):
    data = {t: [dict(zip([c for c, _ in v["columns"]], row, strict=True)) for row in v["rows"]]
            for t, v in tables.items()}
    return execute(reference, tables=data), data


def assert_sql_record(r):
    meta = r["meta"]
    assert r["target"] == meta["reference"] + "<END_A>"
    assert r["prompt"].startswith("<START_Q>" + meta["context"]) and meta["question"] in r["prompt"]
    statements = sqlglot.parse(meta["context"])
    assert statements and all(isinstance(s, exp.Create) for s in statements)
    sqlglot.parse_one(meta["reference"])
    if "tables" in meta:
        result, data = run_on_tables(meta["reference"], meta["tables"])
        assert result.rows, meta["reference"]
        assert len(result.rows) < max(len(rows) for rows in data.values())


def test_wikisql_rows(prep, shared_data):
    res = prep("sql", "--data", shared_data, "--source", "wikisql", "--limit", "60")
    assert res.code == 0, res.err
    recs = res.records
    assert len(recs) == 60 and recs[0]["id"] == "sql/train/wikisql-0"
    first = recs[0]["meta"]
    assert first["reference"] == "SELECT notes FROM table_1000181_1 WHERE current_slogan = 'South Australia'"
    assert first["context"] == "CREATE TABLE table_1000181_1 (notes VARCHAR, current_slogan VARCHAR)"
    assert first["source"] == "wikisql" and "db_id" not in first
    for r in recs:
        assert_sql_record(r)
    assert sum("tables" in r["meta"] for r in recs) >= 55
    assert "tables_valid=" in res.err
    valid = prep("sql", "--data", shared_data, "--source", "wikisql", "--split", "valid", "--limit", "3").records
    assert all(r["id"].startswith("sql/valid/wikisql-") for r in valid)


def test_spider_rows_and_real_databases(prep, shared_data):
    res = prep("sql", "--data", shared_data, "--source", "spider", "--limit", "80", "--require-tables")
    assert res.code == 0, res.err
    recs = res.records
    assert len(recs) == 80 and "tables_dropped=" in res.err
    for r in recs:
        assert_sql_record(r)
        meta = r["meta"]
        db = Path(meta["db_dir"]) / meta["db_id"] / f"{meta['db_id']}.sqlite"
        if db.exists():
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                conn.execute(meta["reference"]).fetchall()  # the normalised query runs on the real rows
    assert recs[0]["meta"]["context"] == "CREATE TABLE head (age INTEGER)"
    assert recs[0]["meta"]["reference"] == "SELECT COUNT(*) FROM head WHERE age > 56"


def test_spider_valid_holds_out_whole_databases(prep, shared_data):
    train = prep("sql", "--data", shared_data, "--source", "spider", "--tables", "none", "-q").records
    valid = prep("sql", "--data", shared_data, "--source", "spider", "--split", "valid", "--tables", "none", "-q").records
    assert len(train) + len(valid) == 7000 and 300 < len(valid) < 1500
    assert not {r["meta"]["db_id"] for r in train} & {r["meta"]["db_id"] for r in valid}
    assert prep("sql", "--data", shared_data, "--source", "spider", "--split", "test").code == 2


def test_sql_formats(prep, shared_data):
    few = prep("sql", "--data", shared_data, "--source", "spider", "--limit", "1", "--format", "fewshot").records[0]
    assert few["prompt"].endswith("<SQL>") and few["stop"] == ["</SQL>"] and few["meta"]["context"] in few["prompt"]
    chat = prep("sql", "--data", shared_data, "--source", "spider", "--limit", "1", "--format", "chat").records[0]
    assert "<SQL>" in chat["messages"][0]["content"] and chat["meta"]["question"] in chat["messages"][-1]["content"]


def test_build_types_and_normalisation():
    b = build("SELECT T1.Name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id "
              "WHERE T2.Year > 2014 GROUP BY T1.Name HAVING AVG(T1.age) < 30", "mysql")
    assert b.tables == {"singer": {"name": "VARCHAR", "id": "VARCHAR", "age": "INTEGER"},
                        "concert": {"singer_id": "VARCHAR", "year": "INTEGER"}}
    assert b.answer.startswith("SELECT t1.name FROM singer AS t1 JOIN concert AS t2")
    assert build('SELECT a FROM t WHERE b = "x"', "mysql").answer == "SELECT a FROM t WHERE b = 'x'"
    with pytest.raises(SqlDrop):
        build("SELECT FROM WHERE")


def test_sql_types_fix_drop_keep():
    sql = "SELECT a FROM t WHERE finish = 24 AND laps > 3"
    assert build(sql, sql_types="fix").answer == "SELECT a FROM t WHERE finish = '24' AND laps > 3"
    assert build(sql, sql_types="keep").answer == sql
    with pytest.raises(SqlDrop) as drop:
        build(sql, sql_types="drop")
    assert drop.value.reason == "sql_types_dropped"


def test_wikisql_template():
    sql = wikisql_sql('SELECT COUNT TABLEalias0.PICK_#_FIELD FROM TABLE AS TABLEalias0 WHERE '
                      'TABLEalias0.CLUB_FIELD = "var0" AND TABLEalias0.2010_FIELD > var1 ;',
                      {"var0": "rayo vallecano", "var1": "37"}, "2-1226335-1", "Who at Rayo Vallecano had more than 37?")
    assert sql == "SELECT COUNT(pick__number) FROM table_2_1226335_1 WHERE club = 'Rayo Vallecano' AND \"2010\" > 37"
    b = build(sql)
    assert b.context == 'CREATE TABLE table_2_1226335_1 (pick__number VARCHAR, club VARCHAR, "2010" INTEGER)'
    assert wikisql_column("TABLEalias0.U.S._VIEWERS_(MILLIONS)_FIELD") == "u_s__viewers__millions_"
    with pytest.raises(SqlDrop):
        wikisql_sql('SELECT TABLEalias0.A_FIELD FROM TABLE AS TABLEalias0 WHERE TABLEalias0.B_FIELD = "var3" ;', {}, "1-1-1", "q")


@pytest.mark.parametrize("sql", [
    "SELECT COUNT(*) FROM head WHERE age > 56",
    "SELECT name FROM t WHERE city = 'Paris' AND year BETWEEN 2000 AND 2010",
    "SELECT t1.name FROM a AS t1 JOIN b AS t2 ON t1.id = t2.a_id WHERE t2.kind = 'x'",
    "SELECT MAX(score) FROM games WHERE team LIKE '%hawks%'",
    "SELECT name FROM people WHERE country IN ('fr', 'de')",
])
def test_synthetic_tables_are_valid_and_deterministic(sql):
    b = build(sql)
    tables = synthetic_tables(b, "0:x")
    assert tables is not None and tables == synthetic_tables(build(sql), "0:x")
    assert tables != synthetic_tables(build(sql), "1:x")
    result, data = run_on_tables(b.answer, tables)
    assert result.rows and len(result.rows) < max(len(r) for r in data.values())


def test_sql_create_context_file(prep, tmp_path):
    # Half the answers in lower case: the file's answer is kept verbatim, not re-spelled by sqlglot.
    rows = [{"question": f"How many heads older than {n}?", "context": "CREATE TABLE head (age INTEGER, name VARCHAR)",
             "answer": f"select count(*) from head where age > {n}" if n % 2
             else f"SELECT COUNT(*) FROM head WHERE age > {n}"} for n in range(60)]
    path = tmp_path / "scc.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    train = prep("sql", "--source", path, "-q").records
    valid = prep("sql", "--source", path, "--split", "valid", "-q").records
    assert len(train) + len(valid) == 60
    assert {r["id"] for r in train}.isdisjoint({r["id"] for r in valid})
    for r in train + valid:  # each record is its own row, whole and runnable
        row = rows[int(r["id"].split("/")[-1])]
        assert r["meta"]["source"] == "local" and r["meta"]["question"] == row["question"]
        assert r["meta"]["context"] == row["context"] and r["meta"]["reference"] == row["answer"]
        assert_sql_record(r)
    r = train[0]
    assert context_schema(r["meta"]["context"]) == {"head": {"age": "INTEGER", "name": "VARCHAR"}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "q", "context": "CREATE TABLE t (a VARCHAR)"}]))
    res = prep("sql", "--source", bad)
    assert res.code == 2 and "row 0" in res.err and "'answer'" in res.err


class FakeOpenAI(QuietHandler):
    """A tiny OpenAI-compatible /v1/chat/completions that writes test tables."""

    def do_POST(self):  # noqa: N802
        body = read_json(self)
        assert body["model"] == "table-writer"
        content = '```json\n{"head": [[60], [20], [30], [70]]}\n```'
        send_json(self, chat_completion(body["model"], {"role": "assistant", "content": content}))


def test_llm_tables_against_a_local_server(prep, tmp_path):
    pytest.importorskip("openai")
    with serve(FakeOpenAI) as base_url:
        path = tmp_path / "scc.json"
        path.write_text(json.dumps([{"question": "Older than 56?", "context": "CREATE TABLE head (age INTEGER)",
                                     "answer": "SELECT COUNT(*) FROM head WHERE age > 56"}] * 3))
        res = prep("sql", "--source", path, "--tables", "llm", "--base-url", base_url, "--model", "table-writer")
    assert res.code == 0, res.err
    tables = res.records[0]["meta"]["tables"]
    assert tables == {"head": {"columns": [["age", "INTEGER"]], "rows": [[60], [20], [30], [70]]}}
    assert "tables_valid=" in res.err


def test_jobs_keep_order_and_output(prep, shared_data):
    args = ("sql", "--data", shared_data, "--source", "spider", "--limit", "40", "-q")
    assert prep(*args).out == prep(*args, "--jobs", "2").out


def test_hub_branch_with_a_fake_dataset():
    from ft_prep import sql

    rows = [{"question": f"Q{i}?", "context": "CREATE TABLE t (a VARCHAR, b INTEGER)",
             "answer": f"SELECT a FROM t WHERE b > {i}"} for i in range(40)]
    calls = []

    def fake_load(hub_id, split=None):
        calls.append((hub_id, split))
        return rows

    train = list(sql.records(sql.source_rows("hub", None, "train", load=fake_load), "train"))
    valid = list(sql.records(sql.source_rows("hub", None, "valid", load=fake_load), "valid"))
    assert calls[0] == ("b-mc2/sql-create-context", "train")
    assert len(train) + len(valid) == 40 and train[0]["meta"]["source"] == "hub"
    assert train[0]["meta"]["reference"] == rows[int(train[0]["id"].split("/")[-1])]["answer"]
    assert all("tables" in r["meta"] for r in train)


def test_source_all_starts_with_wikisql(prep, shared_data):
    recs = prep("sql", "--data", shared_data, "--limit", "2", "--tables", "none").records
    assert [r["id"] for r in recs] == ["sql/train/wikisql-0", "sql/train/wikisql-1"]
