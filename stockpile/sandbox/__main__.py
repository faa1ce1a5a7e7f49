"""``python -m stockpile.sandbox``: run the sandbox AlphaVantage server in the foreground."""

import argparse
import logging
import sys
import threading

from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.listener import DEFAULT_HOST, DEFAULT_PORT, SandboxServer


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m stockpile.sandbox", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--config", help="SandboxConfig as JSON, e.g. '{\"limits\": null}'")
    parser.add_argument(
        "--announce-port",
        action="store_true",
        help="write the bound port and a newline to stdout once listening",
    )
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="shut down when stdin closes (the parent process ended or let go)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = SandboxConfig.model_validate_json(args.config) if args.config else SandboxConfig()
    server = SandboxServer(config, args.host, args.port)
    if args.exit_on_stdin_eof:
        threading.Thread(target=_stop_at_eof, args=(server,), daemon=True).start()
    logging.getLogger(__name__).info("sandbox AlphaVantage listening at %s", server.base_url)
    if args.announce_port:
        sys.stdout.write(f"{server.port}\n")
        sys.stdout.flush()
    server.run()


def _stop_at_eof(server: SandboxServer) -> None:
    sys.stdin.buffer.read()
    server.stop()


if __name__ == "__main__":
    main()
