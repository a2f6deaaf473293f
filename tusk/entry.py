"""The ``tusk`` console script.

``tusk daemon`` and ``tusk worker`` start server processes (``tusk.daemon``);
every other command is the pachctl-style CLI (``cli.main``), which only talks
to the daemon through ``tusk.client``. Keeping the dispatch here keeps the CLI
package free of server imports.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("daemon", "worker"):
        from tusk import daemon

        return daemon.main(args)
    from cli import main as cli_main

    return cli_main.main(args)


if __name__ == "__main__":
    sys.exit(main())
