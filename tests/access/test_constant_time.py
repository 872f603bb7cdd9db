"""Secrets are compared in constant time (issue 18).

An ``==`` on a secret returns as soon as a byte differs, so its timing tells an attacker
how much of a guess was right. This walks the server's source for comparisons whose
operand is named like a secret (access/refresh/as/hs tokens, MACs, shared secrets,
passwords) and fails on any made with ``==``/``!=`` instead of ``hmac.compare_digest`` /
``secrets.compare_digest`` (or bcrypt's check). SQL expressions (``table.c.column ==``)
are lookups, not comparisons in Python, and are left to the database.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("homeserver", "client_api", "federation", "storage", "config", "ai_assistant")
SECRET = re.compile(
    r"(^|_)(secret|shared_secret|mac|as_token|hs_token|access_token|refresh_token|password|"
    r"password_hash|client_secret|signature|sig)($|_)",
)


def _is_column(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "c"


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return node.slice.value
    return None


def secret_comparisons(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare) or not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(o, ast.Constant) for o in operands):  # a literal (`type == "m.login.password"`)
            continue
        if any(_is_column(o) for o in operands):  # SQLAlchemy builds a WHERE clause
            continue
        names = [n for n in map(_name, operands) if n and SECRET.search(n.lower())]
        if names:
            found.append((node.lineno, names[0]))
    return found


def test_no_secret_is_compared_with_equality() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for line, name in secret_comparisons(path.read_text()):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert offenders == [], "compare secrets with hmac.compare_digest:\n" + "\n".join(offenders)


def test_the_check_catches_an_equality_on_a_secret() -> None:
    assert secret_comparisons("ok = given_mac == expected\n") == [(1, "given_mac")]
    assert secret_comparisons("ok = svc.hs_token != token\n") == [(1, "hs_token")]
    assert secret_comparisons("ok = hmac.compare_digest(mac, expected)\n") == []
    assert secret_comparisons("q = tokens.c.refresh_token == refresh_token\n") == []
