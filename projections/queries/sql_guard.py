"""Static check of operator SQL: only readers, judged on DuckDB's own parse tree.

The text is never judged by keywords or regular expressions. Each statement is split off
by DuckDB (``extract_statements``), and every SELECT-typed statement is parsed again by
``json_serialize_sql``, which returns DuckDB's parse tree for SELECT statements and an
error for anything else. The tree is then walked:

- every query node must be a reader (``SELECT_NODE``, ``SET_OPERATION_NODE``,
  ``CTE_NODE``, ``RECURSIVE_CTE_NODE``): ``DELETE``/``INSERT``/``UPDATE``/``MERGE`` inside a
  CTE (which ``extract_statements`` types as SELECT) are refused;
- every table function must be on :data:`TABLE_FUNCTIONS`, an allowlist of readers:
  ``checkpoint()``, ``force_checkpoint()``, ``enable_logging()`` (which changes a setting),
  ``query()``/``query_table()`` (SQL in a string, out of this check's sight),
  ``json_execute_serialized_sql``, ``copy_database``/``import_database`` and the file
  readers are refused, and so is any table function a later DuckDB adds;
- scalar functions with side effects (:data:`SCALAR_DENIED`: ``nextval``, ``setseed``...)
  are refused;
- the size argument of a function that builds a large value from a small one
  (:data:`AMPLIFIERS`: ``repeat``, ``lpad``, ``rpad``, ``range``, ``list_resize``...)
  must be an integer literal of at most :data:`MAX_AMPLIFY`, and so must the widths in
  the literal format of ``printf``/``format``: DuckDB builds a value for 2048 rows at a
  time, outside its memory limit, and an interrupt only lands between such chunks, so
  ``repeat('x', 1000000)`` would allocate 2 GB before anything can stop it.

``EXPLAIN [ANALYZE] <select>`` is accepted when its target passes the same check (the
target is found with DuckDB's tokenizer, so comments cannot hide an ``ANALYZE``);
``EXPLAIN`` of anything else and ``EXPLAIN (options)`` are refused. Every other statement
type (DDL, DML, SET/RESET, PRAGMA, CALL, ATTACH/DETACH, USE, COPY, EXPORT/IMPORT,
INSTALL/LOAD, CHECKPOINT, VACUUM, ANALYZE, transactions, PREPARE/EXECUTE, PIVOT
statements, which create an ENUM type) is refused.

Guarantees: :func:`check` returns the statement texts exactly as they will run; anything
it cannot positively identify as a reader is :class:`SqlForbidden` (fail closed, e.g. if
the ``json`` extension were missing). Failure modes: text DuckDB cannot parse is
:class:`SqlError` with DuckDB's message. This check is the first layer only: the statements
still run in a read-only transaction that is rolled back, with external access disabled,
under time, memory and result-size bounds (:mod:`projections.queries.sql`). What it does not
bound: large values built by chaining (CTE layers of ``s || s ...``, then one new value
per row from it): the memory watch interrupts those, but only after the vector being
built (measured: 1 MB values -> +1.95 GB RSS, 3.05 s, then ``sql_memory_limit``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NoReturn

import duckdb

from events.errors import ThreadlogError


class SqlError(ThreadlogError):
    """The SQL did not parse or failed to run; ``message`` is DuckDB's."""

    code = "sql_error"


class SqlForbidden(ThreadlogError):
    """The SQL is not read-only (or not a single kind of reader)."""

    code = "sql_forbidden"


READ_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "CTE_NODE",
                        "RECURSIVE_CTE_NODE"})
TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "summary", "show", "show_tables", "show_tables_expanded", "show_databases", "table_info",
    "histogram", "histogram_values", "test_all_types", "test_vector_types", "functions",
    "version", "platform", "user_agent", "collations", "database_size", "database_list",
    "storage_info", "metadata_info", "icu_calendar_names", "pg_timezone_names",
    "extension_versions", "pragma_collations", "pragma_database_size",
    "pragma_metadata_info", "pragma_platform", "pragma_show", "pragma_storage_info",
    "pragma_table_info", "pragma_user_agent", "pragma_version",
    "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies",
    "duckdb_extensions", "duckdb_functions", "duckdb_indexes", "duckdb_keywords",
    "duckdb_memory", "duckdb_optimizers", "duckdb_schemas", "duckdb_sequences",
    "duckdb_settings", "duckdb_tables", "duckdb_temporary_files", "duckdb_types",
    "duckdb_views", "duckdb_variables", "duckdb_table_sample",
})
"""Table functions that only read the database's own catalog or generate rows."""
SCALAR_DENIED = frozenset({"nextval", "setseed", "json_execute_serialized_sql", "query",
                           "query_table"})
AMPLIFIERS: dict[str, tuple[int, ...] | None] = {
    "repeat": (1,), "lpad": (1,), "rpad": (1,), "list_resize": (1,),
    "array_resize": (1,), "bar": (3,), "bitstring": (1,), "to_base": (2,),
    "equi_width_bins": (2,), "range": None, "generate_series": None,
}
"""Scalar function -> indexes of its size arguments (None: all of them)."""
FORMATTERS = frozenset({"printf", "format"})
"""Their first argument (widths such as ``%0100000000d``) must be a literal whose numbers
are at most :data:`MAX_AMPLIFY`."""
MAX_AMPLIFY = 10_000


def check(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """The statements of ``sql``, each a proven reader; SqlForbidden / SqlError if not."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(str(exc), details={"sql": sql[:2000]}) from None
    if not statements:
        raise SqlError("no SQL statement given", details={"sql": sql[:2000]})
    out = []
    for s in statements:
        if s.type == duckdb.StatementType.SELECT:
            check_select(con, s.query)
        elif s.type == duckdb.StatementType.EXPLAIN:
            check_select(con, explain_target(s.query))
        else:
            forbid(f"got {s.type.name}", s.query)
        out.append(s.query)
    return out


def forbid(why: str, text: str) -> NoReturn:
    raise SqlForbidden(
        f"only read-only statements (SELECT, WITH, EXPLAIN, DESCRIBE, SHOW) are allowed; "
        f"{why}", details={"reason": why, "statement": text.strip()[:200]})


def explain_target(text: str) -> str:
    """The statement an ``EXPLAIN [ANALYZE]`` explains (comments skipped by DuckDB's
    tokenizer); SqlForbidden for ``EXPLAIN (options)`` or anything unexpected."""
    tokens = duckdb.tokenize(text)
    words = [(start, text[start:end].strip()) for (start, kind), end in zip(
        tokens, [t[0] for t in tokens[1:]] + [len(text)], strict=True)
        if kind != duckdb.token_type.comment]
    if not words or words[0][1].upper() != "EXPLAIN":
        forbid("unrecognised EXPLAIN", text)
    rest = words[1:]
    if rest and rest[0][1].upper() in ("ANALYZE", "ANALYSE"):
        rest = rest[1:]
    if not rest or rest[0][1].startswith("("):
        forbid("EXPLAIN takes a query, without options", text)
    target = text[rest[0][0]:]
    try:
        inner = duckdb.extract_statements(target)
    except duckdb.Error:
        forbid("EXPLAIN of something that is not a query", text)
    if len(inner) != 1 or inner[0].type != duckdb.StatementType.SELECT:
        forbid("EXPLAIN of something that is not a query", text)
    return target


def check_select(con: duckdb.DuckDBPyConnection, text: str) -> None:
    """SqlForbidden unless DuckDB's parse tree of ``text`` only reads (module docstring)."""
    try:
        row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [text]).fetchone()
        tree = json.loads(row[0]) if row else None
    except (duckdb.Error, ValueError) as exc:  # fail closed
        forbid(f"the statement could not be verified ({type(exc).__name__})", text)
    if not isinstance(tree, dict) or tree.get("error") is not False:
        message = tree.get("error_message") if isinstance(tree, dict) else None
        forbid(f"not a plain query ({message or 'unparsable'})", text)
    for node, parent_key in _walk(tree["statements"], ""):
        kind = node.get("type")
        if isinstance(kind, str) and kind.endswith("_NODE") and kind not in READ_NODES:
            forbid(f"{kind.removesuffix('_NODE').replace('_QUERY', '')} inside a query",
                   text)
        if kind == "TABLE_FUNCTION":
            name = _function_name(node.get("function"))
            if name not in TABLE_FUNCTIONS:
                forbid(f"table function {name}() is not a known reader", text)
        elif node.get("class") == "FUNCTION" and parent_key != "function":
            _check_scalar(node, text)


def _check_scalar(node: dict[str, Any], text: str) -> None:
    name = _function_name(node)
    if name in SCALAR_DENIED:
        forbid(f"{name}() has side effects", text)
    args = [a.get("expression") for a in node.get("arguments") or []]
    if name in FORMATTERS:
        fmt = _literal(args[0] if args else None)
        if fmt is None or any(int(d) > MAX_AMPLIFY for d in re.findall(r"\d+", fmt)):
            forbid(f"{name}() takes a literal format with widths of at most "
                   f"{MAX_AMPLIFY:,}", text)
    if name not in AMPLIFIERS:
        return
    for i in AMPLIFIERS[name] or range(len(args)):
        if i < len(args) and abs(_literal_int(args[i])) > MAX_AMPLIFY:
            forbid(f"{name}() sizes must be integer literals of at most {MAX_AMPLIFY:,}",
                   text)


def _literal(expr: Any) -> str | None:
    """The text of a literal constant; None for any other expression."""
    if isinstance(expr, dict) and expr.get("class") == "CONSTANT":
        lit = expr.get("literal")
        if isinstance(lit, dict) and isinstance(lit.get("text"), str):
            return str(lit["text"])
    return None


def _literal_int(expr: Any) -> int:
    """The integer value of a literal; a huge number for anything else (not provable)."""
    try:
        return int(_literal(expr) or "")
    except ValueError:
        return 1 << 62


def _function_name(node: Any) -> str:
    return str(node.get("function_name", "")).lower() if isinstance(node, dict) else ""


def _walk(obj: Any, key: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every dict in the tree with the key it hangs from."""
    if isinstance(obj, dict):
        yield obj, key
        for k, v in obj.items():
            yield from _walk(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v, key)
