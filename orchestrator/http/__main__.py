"""``python -m orchestrator.http [--config FILE] [--db URL] [--host H] [--port P]``: the HTTP service
alone, without the command line's other faces (tests and benchmarks start it so). Expected failures
print one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from orchestrator.config import ConfigError, load_config
from orchestrator.http._server import serve
from orchestrator.store import is_database_error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.http", description=__doc__)
    parser.add_argument(
        "--config", type=Path, default=None, help="orchestrator.yaml (default: found from here)"
    )
    parser.add_argument("--db", default=None, help="store URL (default: the config's)")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
        serve(config, args.db, args.host, args.port)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not is_database_error(exc):
            raise
        print(f"error: the store cannot be opened ({type(exc).__name__}); is it running?", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
