"""The FastAPI application: `create_app()`; `python -m api` serves it with uvicorn."""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api import errors, events, jobs_api, pages
from api.body_limit import BodyLimit, BodyTooLarge, too_large
from api.event_hub import EventHub
from api.flower_tasks import flower_client
from api.keys import parse
from api.page_headers import PageHeaders
from api.schemas import submit_components
from config.apps import AppAccess
from config.settings import Settings, get_settings
from geoqueue.client import GeoQueue


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    await app.state.events.close()
    if app.state.flower is not None:
        await app.state.flower.aclose()
    await app.state.aredis.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="geoqueue", version="1", lifespan=lifespan,
                  description="Submit imaging vendors' long jobs (Immersal, Mapillary, DroneMapper, Immersity AI) "
                              "and follow them: records, items, console, server-sent events, signed webhooks.")
    app.state.settings = settings
    app.state.api_keys = parse(settings.api_keys)
    app.state.access = AppAccess(settings)  # a malformed app setting stops the API at start, naming it
    app.state.queue = GeoQueue(settings.redis_url, settings.redis_sentinel_master)
    app.state.aredis = events.connect_async(settings.redis_url, settings.redis_sentinel_master)
    app.state.events = EventHub(app.state.aredis, settings.api_max_streams_per_key)
    app.state.flower = flower_client(settings)
    errors.install(app)
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.add_middleware(PageHeaders)
    app.include_router(jobs_api.router)
    app.include_router(pages.router)
    app.mount("/ui/static", StaticFiles(directory=pages.STATIC), name="static")

    @app.exception_handler(errors.ApiError)
    async def api_error(request: Request, exc: errors.ApiError):
        # A page's reader without a key goes to the login form; an API caller gets the JSON refusal.
        if exc.status == 401 and request.url.path.startswith("/ui/"):
            return RedirectResponse("/ui/login", status_code=303)
        return errors.error_response(exc)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge):
        return too_large(exc)

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse("/ui/jobs")

    @app.get("/healthz", include_in_schema=False)
    def health():
        app.state.queue.redis.ping()
        return {"ok": True}

    def openapi() -> dict:
        if not app.openapi_schema:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(submit_components())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
