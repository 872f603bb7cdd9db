"""Wall-clock milliseconds, the unit of every Matrix timestamp."""

import time


def now_ms() -> int:
    return int(time.time() * 1000)
