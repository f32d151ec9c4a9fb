"""Where each app's jobs may read and write, and which secret signs its webhooks (README, "Several
apps on one fleet"). The API checks a job's inputs and outputs at submit, and the worker again before
any read or write (runtime/entry.py, services/storage.py), because a message can reach the broker
without the API.

The output area (GEOQUEUE_S3_BUCKET under GEOQUEUE_S3_OUTPUT_PREFIX) is shared out among the apps:

    <area>/apps/<app>/      app <app>'s part: its jobs write there, and may read there
    <area>/ but apps/       the default app's part (GeoQueue over Redis without app=, the CLI)

An app reads its own part and the readable locations (GEOQUEUE_S3_READABLE, default the fleet's
bucket, and its own GEOQUEUE_S3_APP_READABLE), never another app's part, whatever is configured.
"""
from __future__ import annotations

import functools
from typing import Any

from config.settings import Settings, get_settings
from geoqueue.catalog import CATALOG
from geoqueue.job_record import APP, DEFAULT_APP
from geoqueue.params import InvalidParams
from geoqueue.s3ref import BadReference, S3Ref, parse_prefix, parse_ref

APPS_FOLDER = "apps/"


def app_entries(text: str, setting: str) -> list[tuple[str, str]]:
    """(app, value) of `app=value` entries separated by spaces; ValueError naming the setting."""
    entries = []
    for entry in text.split():
        app, sep, value = entry.partition("=")
        if not sep or not APP.fullmatch(app) or not value:
            raise ValueError(f"GEOQUEUE_{setting.upper()}: {app!r} is not an app=value entry with an app name "
                             "(1 to 64 letters, digits, '-' or '_')")
        entries.append((app, value))
    return entries


def prefixes(values: list[str], setting: str) -> list[S3Ref]:
    try:
        return [parse_prefix(value, f"GEOQUEUE_{setting.upper()}") for value in values]
    except BadReference as exc:
        raise ValueError(str(exc)) from None


class AppAccess:
    """The fleet's rules of who reads and writes where, and signs with what, from its settings."""

    def __init__(self, settings: Settings) -> None:
        self.area = parse_prefix(f"s3://{settings.s3_bucket}/{settings.s3_output_prefix}", "GEOQUEUE_S3_OUTPUT_PREFIX")
        self.apps_root = self.area.child(APPS_FOLDER)
        self.fleet_readable = prefixes(settings.s3_readable.split(), "s3_readable") or [
            parse_prefix(f"s3://{settings.s3_bucket}/")]
        self.app_readable: dict[str, list[S3Ref]] = {}
        for app, value in app_entries(settings.s3_app_readable, "s3_app_readable"):
            self.app_readable.setdefault(app, []).extend(prefixes([value], "s3_app_readable"))
        secrets = settings.webhook_app_secrets.get_secret_value() if settings.webhook_app_secrets else ""
        self.secrets = dict(app_entries(secrets, "webhook_app_secrets"))
        self.default_secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None

    # --- places ---
    def part(self, app: str) -> S3Ref:
        """The app's part of the output area (the default app's is the area, but the other apps' parts)."""
        return self.area if app == DEFAULT_APP else self.apps_root.child(f"{app}/")

    def default_output(self, app: str, folder: str) -> S3Ref:
        """Where a job's outputs go when it names none: `<the app's part>/<folder>/`."""
        return self.part(app).child(f"{folder}/")

    def touches_another_part(self, app: str, ref: S3Ref) -> bool:
        """Whether `ref` lies in another app's part, or is a prefix that holds one."""
        holds_parts = (not ref.key or ref.key.endswith("/")) and self.apps_root.within(ref)
        return holds_parts or (ref.within(self.apps_root) and (app == DEFAULT_APP or not ref.within(self.part(app))))

    def writable(self, app: str, ref: S3Ref) -> bool:
        return ref.within(self.part(app)) and not self.touches_another_part(app, ref)

    def readable(self, app: str, ref: S3Ref) -> bool:
        if self.touches_another_part(app, ref):
            return False
        return ref.within(self.part(app)) or any(ref.within(place) for place in self.readable_by(app))

    def readable_by(self, app: str) -> list[S3Ref]:
        return self.fleet_readable + self.app_readable.get(app, [])

    # --- refusals naming the field ---
    def refusal(self, app: str, field: str | None, ref: S3Ref, output: bool) -> str | None:
        """Why `app` may not use `ref` as an input (or an output), or None when it may."""
        lead = f"{field}: " if field else ""
        if output and not ref.within(self.area):
            return (f"{lead}{ref} is outside the fleet's output area {self.area} (GEOQUEUE_S3_BUCKET, "
                    "GEOQUEUE_S3_OUTPUT_PREFIX)")
        if output and not self.writable(app, ref):
            return f"{lead}{ref} is outside app {app}'s part of the output area ({self.shown_part(app)})"
        if not output and not self.readable(app, ref):
            places = ", ".join(map(str, [self.part(app), *self.readable_by(app)]))
            return f"{lead}{ref} is not where app {app} may read inputs ({places}; another app's part never)"
        return None

    def shown_part(self, app: str) -> str:
        return f"{self.area}, but {self.apps_root}" if app == DEFAULT_APP else str(self.part(app))

    def check_params(self, app: str, name: str, params: dict[str, Any]) -> None:
        """Every s3:// input and output of a job's checked parameters; InvalidParams naming the first
        field `app` may not use."""
        for field, value, kind in CATALOG[name].locations(params):
            ref = parse_prefix(value, field) if kind.prefix else parse_ref(value, field)
            problem = self.refusal(app, field, ref, kind.output)
            if problem:
                raise InvalidParams(problem, field=field)

    # --- webhooks ---
    def webhook_secret(self, app: str) -> str | None:
        """The secret that signs the app's webhooks: its own, else the fleet's."""
        return self.secrets.get(app, self.default_secret)


@functools.lru_cache(maxsize=1)
def get_access() -> AppAccess:
    return AppAccess(get_settings())
