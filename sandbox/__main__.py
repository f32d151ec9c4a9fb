"""Run the vendor stand-ins (and optionally moto's S3 server): python -m sandbox --port 8900 --s3-port 8901"""
from __future__ import annotations

import argparse
import signal
import sys

from sandbox.server import SandboxServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="vendor stand-ins (0: any free port)")
    parser.add_argument("--s3-port", type=int, default=None, help="also serve moto's S3 on this port")
    args = parser.parse_args(argv)

    if args.s3_port is not None:
        from moto.server import ThreadedMotoServer

        s3 = ThreadedMotoServer(ip_address=args.host, port=args.s3_port, verbose=False)
        s3.start()
        print(f"s3 http://{args.host}:{args.s3_port}", flush=True)
    server = SandboxServer(args.host, args.port)
    print(f"sandbox {server.url}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
