"""A local DynamoDB for the examples and tests: moto's server, with an infrastructure file's tables.

No Docker, no jar: moto (``moto[server]``, pinned in the ``dev`` extra) answers the DynamoDB API
in memory. ``start()`` runs it on a thread of this process; ``create_tables(endpoint, path)`` makes
the tables a template, serverless.yml or Terraform folder defines (key schema, attribute
definitions, indexes: what hubbub's ``[import] create_tables`` does), in the region the imported
API names, so functions given ``AWS_ENDPOINT_URL_DYNAMODB`` find them.

Run from .venv as a script, it prints ``dynamodb http://127.0.0.1:PORT`` (first line of stdout)
and then ``tables: …``, and serves until SIGINT or SIGTERM (with ``--until-stdin-closes``: until
its standard input closes, i.e. until the parent that holds the pipe ends, and SIGTERM):

    .venv/bin/python scripts/local_dynamodb.py --tables-from examples/seed-terraform/

``python3 dev.py seed`` starts it with ``--until-stdin-closes`` in a session of its own: a Ctrl-C
stops hubbub first, whose shutdown still runs ``$disconnect`` handlers against this DynamoDB.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

if __name__ == "__main__":  # run as a script: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from hubbub.infra.detect import read
from hubbub.infra.load import read_options
from hubbub.infra.tables import table_request

__all__ = ["create_tables", "start"]


def start(host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadedMotoServer, str]:
    """moto's server on ``host:port`` (0: any free port) and its URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{bound_host}:{bound_port}"


def create_tables(endpoint: str, source: Path) -> list[str]:
    """Create ``source``'s DynamoDB tables at ``endpoint`` (existing ones are left); their names."""
    api = read(source, read_options({}, Path.cwd()))
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=api.region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    created = []
    for table in api.tables:
        try:
            client.create_table(**table_request(table))
            created.append(table.name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
    return created


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument(
        "--tables-from",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="a template, serverless.yml or Terraform folder whose tables to create (repeatable)",
    )
    parser.add_argument(
        "--until-stdin-closes",
        action="store_true",
        help="stop when standard input reaches its end (the parent's pipe closed), not on SIGINT",
    )
    args = parser.parse_args(argv)
    server, url = start(args.host, args.port)
    print(f"dynamodb {url}", flush=True)
    for source in args.tables_from:
        names = create_tables(url, source)
        print(f"tables: created {', '.join(names) or 'none'} from {source}", flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    if args.until_stdin_closes:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        def watch_stdin() -> None:
            while sys.stdin.buffer.read(4096):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    else:
        signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
