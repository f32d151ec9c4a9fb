# PYTHON_ARGCOMPLETE_OK
"""`geoqueue`: submit, status, watch, list and cancel jobs; run the local stack or the demo."""
from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import entry_points

from geoqueue.catalog import CATALOG
from geoqueue.client import VENDORS, GeoQueue, UnknownJob
from geoqueue.job_record import STATES
from geoqueue.params import InvalidParams
from geoqueue.terminal import json_text, printable


def parse_params(pairs: list[str], raw_json: str | None) -> dict:
    """The parameters of `--json` and `--param`; InvalidParams (exit status 2) when they are not an object."""
    params = {}
    if raw_json is not None:
        try:
            params = json.loads(raw_json)
        except json.JSONDecodeError as exc:
            raise InvalidParams(f"params: --json is not JSON ({exc})", field="params") from None
        if not isinstance(params, dict):
            raise InvalidParams(f"params: --json must be one JSON object of parameters, got {json.dumps(params)[:80]}",
                                field="params")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidParams(f"params: --param takes key=value, got {pair!r}", field="params")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def progress_line(job, width: int = 30) -> str:
    """One line of a job's progress: name, state/phase, a bar and done/total."""
    filled = round(width * job.done / job.total) if job.total else 0
    count = f" {job.done}/{job.total}" if job.total else ""
    return printable(f"{job.name} {job.state}/{job.phase} [{'#' * filled}{'.' * (width - filled)}]{count}")


def watch(queue: GeoQueue, job_id: str, out=sys.stderr) -> int:
    """A live progress line until the job finishes; exit status 0 only for success."""
    shown = 0
    for job in queue.watch(job_id):
        line = progress_line(job)
        out.write("\r" + line.ljust(shown))
        out.flush()
        shown = len(line)
    out.write("\n")
    job = queue.status(job_id)
    print(json_text(job.to_dict()))
    return 0 if job.state == "succeeded" else 1


def print_jobs(jobs) -> None:
    for job in jobs:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created))
        print(printable(f"{job.id}  {created}  {job.state:<9}  {job.name:<28} {job.phase} {job.done}/{job.total}"))


def print_job(job) -> None:
    """A job's record for a person; `-o json` gives all of it."""
    print(printable(f"{job.id}  {job.name}  {job.state}"))
    print(f"  progress  {progress_line(job)}")
    print(f"  created   {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(job.created))}   credits {job.credits}")
    if job.error:
        print(f"  error     {printable(job.error.get('type'))}: {printable(job.error.get('message'))}")
    if job.result is not None:
        print(f"  result    {printable(json.dumps(job.result))}")


def print_items(items: dict[str, dict]) -> None:
    for item, outcome in sorted(items.items()):
        error = outcome.get("error")
        shown = f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else \
            ("ok" if outcome.get("ok", True) else json.dumps(outcome))
        print(printable(f"{item}  {shown}"))


def is_http(url: str | None) -> bool:
    return bool(url) and url.startswith(("http://", "https://"))


def job_names(prefix: str, **_) -> list[str]:
    return [name for name in CATALOG if name.startswith(prefix)]


def recent_job_ids(prefix: str, parsed_args, **_) -> list[str]:
    """Shell completion of job ids: the newest jobs in the fleet's Redis."""
    try:
        return [job.id for job in GeoQueue(parsed_args.redis_url).list(50) if job.id.startswith(prefix)]
    except Exception:  # completion must never print a traceback into the shell
        return []


def enable_completion(parser: argparse.ArgumentParser) -> None:
    """Tab completion when argcomplete is installed (`pip install './client[cli]'`), then once:
    eval "$(register-python-argcomplete geoqueue)"."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def plugin_commands() -> dict:
    """Commands other installed distributions add (the fleet's `stack` and `demo`): entry points
    in the group `geoqueue.commands`, each a function of its remaining arguments."""
    return {point.name: point.load() for point in entry_points(group="geoqueue.commands")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="geoqueue", description=__doc__)
    parser.add_argument("--redis-url", "--url", dest="redis_url",
                        help="the fleet's Redis (default: $GEOQUEUE_REDIS_URL), or the HTTP API's URL "
                             "(https://..., with the key in $GEOQUEUE_API_KEY)")
    parser.add_argument("--app", help="over Redis: the app to act as (default: $GEOQUEUE_APP, else 'default'); "
                                      "over HTTP the key's app")
    sub = parser.add_subparsers(dest="command", required=True)

    submit = sub.add_parser("submit", help="enqueue a job and print its id")
    submit.add_argument("name", help="job name, e.g. immersity.disparity").completer = job_names
    submit.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter (VALUE parsed as JSON when it is JSON)")
    submit.add_argument("--json", help="all parameters as one JSON object")
    submit.add_argument("--job-id", help="your own id for the job (letters, digits, '-', '_'); submitting it again "
                                         "with the same parameters is the same job")
    submit.add_argument("--watch", action="store_true", help="then show progress until it finishes")

    for name, text in (("status", "print a job's record"), ("watch", "live progress until the job finishes"),
                       ("cancel", "cancel a job"), ("items", "per-item outcomes of a batch job")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("job_id").completer = recent_job_ids
        if name in ("status", "items"):
            cmd.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")

    listing = sub.add_parser("list", help="recent jobs")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--vendor", choices=VENDORS)
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")

    plugins = plugin_commands()
    for name, command in plugins.items():
        plugin = sub.add_parser(name, help=(command.__doc__ or "").strip())
        plugin.add_argument("args", nargs=argparse.REMAINDER)

    enable_completion(parser)
    args = parser.parse_args(argv)
    if args.command in plugins:
        return plugins[args.command](args.args)

    try:
        queue = GeoQueue(args.redis_url) if is_http(args.redis_url) else GeoQueue(args.redis_url, app=args.app)
        if args.command == "submit":
            job_id = queue.submit(args.name, parse_params(args.param, args.json), job_id=args.job_id)
            print(job_id)
            return watch(queue, job_id) if args.watch else 0
        if args.command == "status":
            job = queue.status(args.job_id)
            print(json_text(job.to_dict())) if args.output == "json" else print_job(job)
        elif args.command == "items":
            items = queue.items(args.job_id)
            print(json_text(items)) if args.output == "json" else print_items(items)
        elif args.command == "watch":
            return watch(queue, args.job_id)
        elif args.command == "cancel":
            canceled = queue.cancel(args.job_id)
            print("canceled" if canceled else f"not canceled: the job is already {queue.status(args.job_id).state}")
            return 0 if canceled else 1
        elif args.command == "list":
            found = queue.list(args.limit, state=args.state, vendor=args.vendor)
            if args.output == "json":
                print(json_text([job.to_dict() for job in found]))
            else:
                print_jobs(found)
    except UnknownJob as exc:
        print(printable(f"no job {exc.args[0]}"), file=sys.stderr)
        return 2
    except InvalidParams as exc:
        print(printable(f"refused: {exc}"), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
