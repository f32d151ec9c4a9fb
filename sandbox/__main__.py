"""Run the vendor stand-ins: python -m sandbox --port 8900 (S3's stand-in: python -m sandbox.s3)."""
from __future__ import annotations

import argparse
import signal
import sys

from sandbox.server import SandboxServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="0: any free port")
    args = parser.parse_args(argv)
    server = SandboxServer(args.host, args.port)
    print(f"sandbox {server.url}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
