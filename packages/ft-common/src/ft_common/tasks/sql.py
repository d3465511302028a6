"""SQL: a question plus CREATE TABLE context -> a SQL query (b-mc2/sql-create-context shape).

The fine-tuned layout puts the context and the question inside the question
markers; prompted baselines answer inside <SQL></SQL> tags.
"""

from __future__ import annotations

import re

from ft_common.tasks.base import Task

_SQL_TAG = re.compile(r"<SQL>(.*?)(?:</SQL>|$)", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"```(?:sql)?\s*(.*?)(?:```|$)", re.IGNORECASE | re.DOTALL)


def sql_input(question: str, context: str) -> str:
    """The text between <START_Q> and <END_Q> for the SQL task."""
    return f"{context}\n-- {question}"


def extract_sql(completion: str) -> str:
    """The query in a completion: inside <SQL></SQL> or a ```sql fence if present, else all of it."""
    for pattern in (_SQL_TAG, _FENCE):
        match = pattern.search(completion)
        if match and match.group(1).strip():
            return match.group(1).strip().rstrip(";").strip()
    return completion.strip().rstrip(";").strip()


class SqlTask(Task):
    def parse_answer(self, completion: str) -> str | None:
        return extract_sql(self.answer_text(completion)) or None


TASK = SqlTask(name="sql", description="question + CREATE TABLE context -> SQL (b-mc2/sql-create-context)", meta={
    "question": "the English question",
    "context": "CREATE TABLE statements (sql-create-context shape)",
    "reference": "the reference SQL query",
    "tables": "synthetic test tables: {table: {columns: [[name, type], ...], rows: [[v, ...], ...]}}",
    "db_id": "Spider database id, when the row has a real database",
    "db_dir": "folder holding DB_ID/DB_ID.sqlite (as given to ft-prep --db-dir)",
    "source": "wikisql, spider, or hub/local for sql-create-context files",
})
