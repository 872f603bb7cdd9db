"""``python -m homeserver.testnet ...``, the same as ``python -m homeserver testnet ...``."""

import sys

from homeserver.testnet.cli import main

sys.exit(main())
