"""Dependencies point inward: the money core imports nothing from the platform side."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ESCROW = Path(__file__).resolve().parents[2] / "escrow"
FORBIDDEN = {"bot", "tweepy", "flask", "apscheduler", "requests", "werkzeug", "stripe", "mastodon"}
BOT = ESCROW.parent / "bot"
PAYMENTS = BOT / "payments"


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_escrow_imports_nothing_from_bot_tweepy_flask_or_apscheduler():
    offenders = {
        str(p.relative_to(ESCROW.parent)): sorted(_imported_roots(p) & FORBIDDEN)
        for p in ESCROW.rglob("*.py")
        if _imported_roots(p) & FORBIDDEN
    }
    assert offenders == {}


def test_only_the_payments_package_imports_stripe():
    offenders = [
        str(p.relative_to(BOT.parent))
        for p in BOT.rglob("*.py")
        if "stripe" in _imported_roots(p) and PAYMENTS not in p.parents
    ]
    assert offenders == []


def test_the_check_itself_sees_imports(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("import tweepy\nfrom bot.config import Settings\n")
    assert _imported_roots(sample) >= {"tweepy", "bot"}


def test_every_module_opens_with_a_docstring_saying_what_it_does():
    root = ESCROW.parent
    missing = [
        str(p.relative_to(root))
        for pkg in ("bot", "escrow")
        for p in (root / pkg).rglob("*.py")
        if "migrations/versions" not in str(p)
        and p.stat().st_size > 0
        and not p.name == "__init__.py"
        and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert missing == []


# --- one money path ----------------------------------------------------------------------

# Writing a transfer row, in any spelling escrow/ could use: SQLAlchemy on the table,
# the dialect helpers of escrow/db.py given the table, or SQL text.
WRITES_TRANSFERS = re.compile(
    r"\btransfers\.insert\(|\binsert\(\s*transfers\b"
    r"|\b(?:dialect_insert|insert_ignore|upsert|bulk_insert|insert_returning_ids)\(\s*\w+,\s*transfers\b"
    r"|INSERT\s+INTO\s+transfers\b|COPY\s+transfers\b|\bupdate\(\s*transfers\b|UPDATE\s+transfers\b",
    re.IGNORECASE,
)
# Moving an account counter: assigning one of the four columns, in SQLAlchemy or SQL text.
MOVES_COUNTERS = re.compile(
    r"\b(?:debits|credits)_(?:posted|pending)\s*=\s*(?:accounts\.|[a-z_]+\.c\.|accounts\.c\[)"
    r"|\{c:\s*accounts\.c\[c\]|SET\s+(?:debits|credits)_(?:posted|pending)\b",
    re.IGNORECASE,
)
# The ledger's one writer: apply_transfers (with its counter helper and statement) and its
# set-based twin. Nothing else in escrow/ may write a transfer or move a counter.
MONEY_WRITERS = {
    "escrow/ledger.py:apply_transfers",
    "escrow/ledger.py:_move_counters",
    "escrow/ledger.py:_COUNTER_UPDATE",
    "escrow/ledger.py:applying_transfer_set",
}


def _writers(path: Path, pattern: re.Pattern[str]) -> set[str]:
    """`module:name` of every top-level function or assignment whose source matches."""
    source = path.read_text()
    name = str(path.relative_to(ESCROW.parent)) if path.is_relative_to(ESCROW) else path.name
    found = set()
    for node in ast.parse(source).body:
        segment = ast.get_source_segment(source, node) or ""
        if not pattern.search(segment):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(f"{name}:{node.name}")
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found.add(f"{name}:{node.targets[0].id}")
        else:
            found.add(f"{name}:line {node.lineno}")
    return found


def _money_writers() -> set[str]:
    found: set[str] = set()
    for path in ESCROW.rglob("*.py"):
        if "migrations" not in path.parts:
            found |= _writers(path, WRITES_TRANSFERS) | _writers(path, MOVES_COUNTERS)
    return found


def test_escrow_has_one_writer_of_transfers_and_account_counters():
    assert _money_writers() <= MONEY_WRITERS
    assert any(w.endswith(":apply_transfers") for w in _money_writers())


def test_the_money_writer_check_sees_every_spelling(tmp_path):
    spellings = [
        "conn.execute(transfers.insert().values(amount_minor=1))",
        "conn.execute(insert(transfers).values(amount_minor=1))",
        "bulk_insert(conn, transfers, rows)",
        "conn.execute(text('INSERT INTO transfers (id) VALUES (1)'))",
        "conn.execute(update(accounts).values(debits_posted=accounts.c.debits_posted + 1))",
        "conn.execute(text('UPDATE accounts SET credits_pending = credits_pending + 1'))",
    ]
    for n, line in enumerate(spellings):
        sample = tmp_path / f"probe_{n}.py"
        sample.write_text(f"def sneaky(conn):\n    {line}\n")
        assert _writers(sample, WRITES_TRANSFERS) | _writers(sample, MOVES_COUNTERS), line


# --------------------------------------------------------------------------- the platform side

BOT = ESCROW.parent / "bot"

# Each outside client library may be imported only inside its adapter's package: the rest
# of the bot speaks to the ports (`bot.platforms`), never to a client or its JSON.
CLIENT_HOMES = {
    "tweepy": "bot/platforms/x",
    "mastodon": "bot/platforms/mastodon",
    "stripe": "bot/payments",
}

MAX_FUNCTION_LINES = 100


def _sources(*packages: str) -> list[Path]:
    root = ESCROW.parent
    return [
        p
        for pkg in packages
        for p in sorted((root / pkg).rglob("*.py"))
        if "migrations/versions" not in p.as_posix()
    ]


def _relative(path: Path) -> str:
    return path.relative_to(ESCROW.parent).as_posix()


def test_each_client_library_is_imported_only_by_its_adapter():
    offenders = {
        _relative(p): sorted(lib for lib in CLIENT_HOMES if lib in roots)
        for p in _sources("bot", "escrow", "benchmarks")
        if (roots := _imported_roots(p))
        and any(
            lib in roots and not _relative(p).startswith(CLIENT_HOMES[lib] + "/")
            for lib in CLIENT_HOMES
        )
    }
    assert offenders == {}


def test_the_bot_loads_modules_by_plain_imports_only():
    offenders = [
        _relative(p)
        for p in _sources("bot")
        if "importlib" in _imported_roots(p) or "__import__(" in p.read_text()
    ]
    assert offenders == []


def _long_functions(path: Path, root: Path = ESCROW.parent) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(root).as_posix()}:{node.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_function_in_bot_or_escrow_is_over_100_lines():
    found = [name for p in _sources("bot", "escrow") for name in _long_functions(p)]
    assert found == []


def test_the_length_check_sees_a_long_function(tmp_path):
    sample = tmp_path / "long.py"
    sample.write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    short = tmp_path / "short.py"
    short.write_text("def g():\n" + "    x = 1\n" * (MAX_FUNCTION_LINES - 1))
    assert _long_functions(sample, tmp_path) == ["long.py:f"]
    assert _long_functions(short, tmp_path) == []
