"""``testnet``: a local network of Tricolor homeservers that federate with each other.

    python -m homeserver testnet up --servers 2 [--database sqlite|mysql] [--dir DIR]
                                    [--base-port P] [--names n1,n2,...|ip] [--fast-passwords]
    python -m homeserver testnet status --dir DIR
    python -m homeserver testnet stop NAME --dir DIR
    python -m homeserver testnet start NAME --dir DIR
    python -m homeserver testnet down --dir DIR

``up`` gives every server a directory ``DIR/<name>/`` (config, keys, certificate,
sqlite file, ``server.log``), a client port (``base + 2i``, plain HTTP) and a
federation port (``base + 2i + 1``, HTTPS with a certificate from one test CA in
``DIR/ca/`` that every member trusts), and a static map from every server name
to ``127.0.0.1:<federation port>`` so no DNS is needed. ``--names ip`` names the
servers ``127.0.0.1:<federation port>``, the IP-literal form Synapse peers can
reach without DNS. Servers run detached (they outlive this command);
``DIR/testnet.json`` remembers them for the other subcommands.

Every command prints one JSON object on stdout (and nothing else there), so
scripts and tests can read it; problems go to stderr with a non-zero exit.
Everything listens on 127.0.0.1 only, and every wait is bounded.

The package, by responsibility: ``network`` (the servers and the state file),
``processes`` (starting, health-waiting and stopping them), ``databases`` (MariaDB),
``commands`` (the subcommands) and ``cli`` (the parser and the JSON printing).
"""

from homeserver.testnet.cli import add_testnet_parser, main
from homeserver.testnet.databases import _mysql_database_name
from homeserver.testnet.errors import TestnetError
from homeserver.testnet.network import _server_names

# The underscored names are re-exported for the unit tests in tests/integration/test_testnet.py.
__all__ = ["TestnetError", "_mysql_database_name", "_server_names", "add_testnet_parser", "main"]
