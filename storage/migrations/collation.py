"""The binary, NO PAD collation for MySQL-family tables.

Matrix ids, state keys and txn ids are compared byte for byte, and "abc" and
"abc " are different keys: MariaDB's utf8mb4_bin pads (ignores trailing
spaces), so MariaDB gets utf8mb4_nopad_bin and MySQL 8 utf8mb4_0900_bin.
"""

from alembic import op


def collation() -> str:
    dialect = op.get_bind().dialect
    return "utf8mb4_nopad_bin" if getattr(dialect, "is_mariadb", False) else "utf8mb4_0900_bin"
