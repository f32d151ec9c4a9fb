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
    parser.add_argument("--s3-port", type=int, default=None,
                        help="also serve moto's S3 on this port, checking presigned URLs as S3 does")
    parser.add_argument("--s3-credentials", default=None, metavar="KEY:SECRET[,KEY:SECRET]",
                        help="access keys presigned URLs may be signed with "
                             "(default: sandbox-access-key:sandbox-secret-key)")
    args = parser.parse_args(argv)

    if args.s3_port is not None:
        from sandbox.s3 import S3StandIn

        credentials = None
        if args.s3_credentials:
            credentials = dict(pair.split(":", 1) for pair in args.s3_credentials.split(",") if pair)
        s3 = S3StandIn(args.host, args.s3_port, credentials).start()
        print(f"s3 {s3.url}", flush=True)
    server = SandboxServer(args.host, args.port)
    print(f"sandbox {server.url}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
