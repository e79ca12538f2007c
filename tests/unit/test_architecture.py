"""Dependencies point inward: the money core imports nothing from the platform side."""

from __future__ import annotations

import ast
from pathlib import Path

ESCROW = Path(__file__).resolve().parents[2] / "escrow"
FORBIDDEN = {"bot", "tweepy", "flask", "apscheduler", "requests", "werkzeug"}


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
