"""Every setting of the fleet, read from GEOQUEUE_* environment variables.

One module so that an operator can see the whole surface in one place; README's
settings table is generated from it (`python -m config.settings`).
Secrets are SecretStr so they never print in reprs, logs or Flower.
"""
from __future__ import annotations

import functools

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SEVEN_DAYS = 7 * 24 * 3600


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEOQUEUE_", extra="ignore")

    # --- Redis: broker, result backend, job ledger, locks, token cache ---
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis used as broker, result backend and job ledger; `sentinel://host:26379;sentinel://host2:26379/0` for Redis Sentinel.")
    redis_sentinel_master: str = Field("mymaster", description="Name of the master the sentinels watch (sentinel:// URLs only).")
    visibility_timeout: int = Field(3600, description="Seconds before an unacknowledged message is redelivered. Every time limit, countdown and backoff is kept below it.")
    unacked_restore_interval: int = Field(10, description="Seconds between sweeps that put messages of dead workers back on their queue.")
    task_time_limit: int = Field(1800, description="Hard time limit of one task run (seconds); must be below the visibility timeout.")
    retry_backoff_max: int = Field(300, description="Longest wait between two retries (seconds); must be below the visibility timeout.")
    call_retries: int = Field(6, description="Tries of one vendor call on 5xx, 429, timeouts and dropped connections (exponential backoff, full jitter); a call that creates or pays for something is tried again only when the vendor answered.")
    call_retry_seconds: float = Field(120.0, description="Longest time one vendor call spends on its tries.")
    submit_grace: int = Field(60, description="Seconds a recorded job may wait for its message to reach a worker before the sweeper sends it again (found in no queue), or sends it at all (its submit failed).")
    unpolled_after: int = Field(30, description="Seconds a job waiting on a vendor may go without its poller looking at it before it is reported (metric, log) and polled again.")
    max_retries: int = Field(6, description="Retries of a task whose vendor call ran out of its own tries, or that ran past its soft time limit.")
    result_expires: int = Field(7 * 24 * 3600, description="Seconds Celery results and finished job records are kept.")
    redis_outage_tolerance: int = Field(300, description="Seconds a worker, its tasks and beat keep retrying Redis while it is away (a restart, a failover) before a call fails; work resumes as soon as Redis is back.")
    redis_replica_wait_ms: int = Field(1000, ge=0, description="When the Redis primary has replicas: longest wait (ms) for one of them to acknowledge a write that guards a paid or creating vendor call, grants a lease, or creates or ends a job (Redis WAIT), so that a failover cannot lose it; a paid call whose marker no replica acknowledged in time is tried again later. 0: never wait. Without replicas nothing waits.")
    worker_max_tasks_per_child: int = Field(1000, description="Tasks a prefork child runs before it is replaced by a fresh one (frees what a long-lived process accumulates); 0: no limit.")
    worker_max_memory_per_child: int = Field(409_600, description="Resident memory (KiB) above which a prefork child is replaced after its current task; 0: no limit.")
    control_concurrency: int = Field(4, description="Processes of a control-queue worker (short work: planning, polling).")
    transfer_pool: str = Field("threads", description="Pool of a transfer-queue worker: threads (vendor calls wait, a thread each; time limits kept by workers/watchdog.py) or prefork.")
    malloc_arenas: int = Field(2, description="malloc arenas a worker process keeps (glibc; MALLOC_ARENA_MAX, when set, wins): a threads pool's memory stays flat with its work instead of growing with its threads; 0: the C library's default.")
    transfer_concurrency: int = Field(100, description="Vendor calls a transfer-queue worker has in flight at once (threads; processes with prefork).")

    # --- Beat ---
    beat_max_loop_interval: int = Field(5, description="Longest sleep of beat between two looks at the schedule (seconds).")
    beat_lock_timeout: int = Field(30, description="Seconds the RedBeat leader lock lives without renewal; a standby beat takes over after it.")

    # --- Object storage (S3 or compatible) ---
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint the workers use; unset means AWS.")
    s3_public_endpoint_url: str | None = Field(None, description="Endpoint put into presigned URLs handed to vendors; defaults to the endpoint above.")
    s3_region: str = Field("us-east-1", description="Region of the bucket (part of the SigV4 signature).")
    s3_bucket: str = Field("geoqueue", description="The bucket every output goes to.")
    s3_output_prefix: str = Field("", description="Prefix in that bucket under which every output goes (the output area); a job's output anywhere else is refused. Each app has its part of it: `apps/<app>/` (the default app: the rest).")
    s3_readable: str = Field("", description="Where jobs may read their inputs: s3:// prefixes separated by spaces; empty: the fleet's bucket. An app's own part of the output area is readable too, another app's never; an input elsewhere is refused at submit and by the worker.")
    s3_app_readable: str = Field("", description="More readable locations for one app each: `app=s3://bucket/prefix/` entries separated by spaces (an app may have several).")
    s3_access_key_id: SecretStr | None = Field(None, description="Access key; unset means boto3's default credential chain.")
    s3_secret_access_key: SecretStr | None = Field(None, description="Secret key matching the access key.")
    presign_expires: int = Field(3600, description="Lifetime of presigned URLs (seconds); at most 7 days.")

    # --- Immersity AI ---
    immersity_api_url: str = Field("https://api.immersity.ai", description="Immersity AI API base URL.")
    immersity_token_url: str = Field(
        "https://auth.immersity.ai/auth/realms/immersity/protocol/openid-connect/token",
        description="OAuth2 client-credentials token endpoint.",
    )
    immersity_client_id: SecretStr | None = Field(None, description="Immersity client id.")
    immersity_client_secret: SecretStr | None = Field(None, description="Immersity client secret.")
    immersity_timeout: float = Field(300.0, description="Client timeout of one disparity/animation call (seconds); the vendor blocks until done.")
    immersity_default_price: int = Field(10, description="Credits per call when /api/v1/prices does not name one.")
    immersity_credit_budget: int | None = Field(None, description="Credits the fleet may spend in all; a job that would exceed it is refused before any call. Unset: no budget.")
    immersity_max_parallel: int = Field(64, description="Images of one batch job processed at once (each call blocks a transfer thread until the vendor answers).")

    # --- Immersal ---
    immersal_url: str = Field("https://api.immersal.com", description="Immersal REST API base URL.")
    immersal_token: SecretStr | None = Field(None, description="Immersal developer token (or use login and password).")
    immersal_login: str | None = Field(None, description="Immersal account login, to obtain the token by /login.")
    immersal_password: SecretStr | None = Field(None, description="Immersal account password.")
    immersal_account: str = Field("default", description="Alias of the configured Immersal account, used in locks and job records.")
    immersal_max_parallel: int = Field(16, description="Image submissions of one map-building job in flight at once (chunk tasks, each submitting its images one after another).")
    immersal_timeout: float = Field(60.0, description="Client timeout of one Immersal call (seconds).")
    immersal_exact_captures: bool = Field(False, description="One image capture in flight per workspace, so that a capture cut off by a killed worker is settled by Immersal's image count and no image that arrived is sent again; slower than parallel submission (a job's `exact_captures` overrides it).")

    # --- DroneMapper ---
    dronemapper_url: str = Field("https://dronemapper.io", description="DroneMapper (WebODM-style) API base URL.")
    dronemapper_username: str | None = Field(None, description="DroneMapper API username.")
    dronemapper_password: SecretStr | None = Field(None, description="DroneMapper API password.")
    dronemapper_max_parallel_uploads: int = Field(4, description="Images of one survey uploaded at once (partial upload flow).")
    dronemapper_timeout: float = Field(120.0, description="Client timeout of one DroneMapper call (seconds).")

    # --- Mapillary ---
    mapillary_graph_url: str = Field("https://graph.mapillary.com", description="Mapillary Graph API v4 base URL.")
    mapillary_tiles_url: str = Field("https://tiles.mapillary.com", description="Mapillary vector tiles base URL.")
    mapillary_upload_url: str = Field("https://rupload.facebook.com", description="Mapillary resumable upload base URL.")
    mapillary_legacy_upload_url: str | None = Field(None, description="Legacy (form) upload endpoint, when uploads use the legacy protocol.")
    mapillary_token: SecretStr | None = Field(None, description="Mapillary access token (OAuth).")
    mapillary_account: str = Field("default", description="Alias of the configured Mapillary token, naming its fleet-wide rate limits.")
    mapillary_upload_protocol: str = Field("resumable", description="Upload protocol: resumable (offset-based) or legacy (form upload).")
    mapillary_username: str | None = Field(None, description="Mapillary username (legacy uploads).")
    mapillary_permission_hash: SecretStr | None = Field(None, description="Permission hash (legacy uploads).")
    mapillary_signature_hash: SecretStr | None = Field(None, description="Signature hash (legacy uploads).")
    mapillary_entity_per_minute: int = Field(60000, description="Fleet-wide limit of entity (image/sequence) requests per minute per token.")
    mapillary_search_per_minute: int = Field(10000, description="Fleet-wide limit of search requests per minute per token.")
    mapillary_tiles_per_day: int = Field(50000, description="Fleet-wide daily budget of coverage tile requests per token.")
    mapillary_max_parallel: int = Field(8, description="Sequences of one harvest (images of one upload) in flight at once.")
    mapillary_calls_per_sequence: int = Field(32, ge=1, description="Calls one harvested sequence has in flight at once: its metadata batches and thumbnail downloads, a thread each (so a harvest has up to max_parallel times this many), within the fleet-wide rate limits.")
    mapillary_timeout: float = Field(60.0, description="Client timeout of one Mapillary call (seconds).")

    # --- Metrics ---
    metrics_port: int = Field(9808, description="Port of the Prometheus exporter (queue depth, jobs by vendor and state).")
    metrics_address: str = Field("0.0.0.0", description="Address the Prometheus exporter listens on.")

    # --- Flower ---
    flower_port: int = Field(5555, description="Port Flower listens on.")
    flower_address: str = Field("0.0.0.0", description="Address Flower listens on.")
    flower_basic_auth: SecretStr | None = Field(None, description="user:password for Flower's basic auth.")
    flower_allow_unauthenticated: bool = Field(False, description="Start Flower without auth (local experiments only).")

    @model_validator(mode="after")
    def _limits_below_visibility_timeout(self) -> Settings:
        # Redis redelivers anything unacked after the visibility timeout, so a task, a retry
        # countdown or a backoff that outlives it would run twice.
        for name in ("task_time_limit", "retry_backoff_max"):
            if getattr(self, name) >= self.visibility_timeout:
                raise ValueError(f"GEOQUEUE_{name.upper()} must be below GEOQUEUE_VISIBILITY_TIMEOUT ({self.visibility_timeout}s)")
        if self.call_retry_seconds >= self.soft_time_limit:
            raise ValueError("GEOQUEUE_CALL_RETRY_SECONDS must be below the soft time limit (a little under GEOQUEUE_TASK_TIME_LIMIT)")
        if self.immersity_timeout >= self.soft_time_limit:
            raise ValueError("GEOQUEUE_IMMERSITY_TIMEOUT must be below the soft time limit (a little under GEOQUEUE_TASK_TIME_LIMIT)")
        if self.beat_lock_timeout <= self.beat_max_loop_interval:
            raise ValueError("GEOQUEUE_BEAT_LOCK_TIMEOUT must exceed GEOQUEUE_BEAT_MAX_LOOP_INTERVAL, or the leader loses its lock between ticks")
        if not 0 < self.presign_expires <= SEVEN_DAYS:
            raise ValueError(f"GEOQUEUE_PRESIGN_EXPIRES must be between 1 and {SEVEN_DAYS} seconds (SigV4 maximum)")
        return self

    @property
    def longest_call_timeout(self) -> float:
        """The longest client timeout of one vendor call."""
        return max(self.immersity_timeout, self.immersal_timeout, self.dronemapper_timeout, self.mapillary_timeout)

    @property
    def soft_time_limit(self) -> int:
        # Leaves the task time to record its failure before the hard kill.
        return self.task_time_limit - min(30, max(1, self.task_time_limit // 10))

    # --- HTTP API, job pages and webhooks (api/, webhooks/delivery.py) ---
    api_address: str = Field("0.0.0.0", description="Address the HTTP API (`python -m api`) listens on.")
    api_port: int = Field(8080, description="Port of the HTTP API and its job pages.")
    api_keys: str = Field("", description="API keys, as hashes: `name:scope+scope:sha256hex[:app]` entries separated by spaces; scopes `submit` and `read`; the key's app is the one named last, else its name. `python -m api.keys NAME [--app APP] submit read` makes a key and its entry.")
    api_max_body_bytes: int = Field(1_048_576, description="Largest request body the API reads (bytes); larger ones get 413.")
    api_idempotency_ttl: int = Field(86400, description="Seconds an `Idempotency-Key` keeps naming the job it created.")
    api_flower_url: str | None = Field(None, description="Flower as a browser reaches it, for the job page's links to a job's tasks.")
    webhook_secret: SecretStr | None = Field(None, description="Standard Webhooks signing secret (`whsec_` + base64); the deliverer refuses to start without it. It signs the webhooks of every app without a secret of its own.")
    webhook_app_secrets: SecretStr | None = Field(None, description="Signing secrets of apps that have their own: `app=whsec_...` entries separated by spaces. Give each app its own, so that no app can sign another's webhooks.")
    webhook_default_url: str | None = Field(None, description="Where a job's end is posted when it was submitted without a callback_url; unset: nowhere.")
    webhook_retry_window: int = Field(86400, description="Seconds after a job's end during which a failed webhook delivery is retried (at least one attempt is made).")
    webhook_backoff_initial: float = Field(5.0, description="Wait before the second delivery attempt (seconds); doubles at each failure, with jitter.")
    webhook_backoff_max: float = Field(3600.0, description="Longest wait between two delivery attempts (seconds).")
    webhook_timeout: float = Field(10.0, description="Timeout of one webhook POST (seconds).")
    webhook_allow_private: bool = Field(False, description="Allow callback URLs on loopback, private and link-local addresses (local stacks and tests only).")

    # --- HTTP API limits and job pages' sign-in (api/) ---
    api_max_streams_per_key: int = Field(20, ge=1, description="Event streams (`/v1/events`, a job's events, the job pages' live updates) one API key may hold open on one API process; past it, 429. Every stream of a process shares one Redis subscription.")
    api_session_ttl: int = Field(43200, ge=60, description="Seconds a job pages' sign-in lasts (a read-only session kept in Redis; the cookie holds its id, never the key).")
    api_flower_api_url: str | None = Field(None, description="Flower as the API process reaches it (inside the deployment), for a job page's list of tasks; the only address Flower's credentials are sent to (GEOQUEUE_API_FLOWER_URL is only linked to). Unset: a job page links its entry task only.")
    api_cookie_secure: bool | None = Field(None, description="Mark the job pages' session cookie `Secure` (sent over HTTPS only, as behind a TLS proxy). Unset: on, unless GEOQUEUE_API_ADDRESS is a loopback address.")


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None else f"`{default}`"
        rows.append(f"| `GEOQUEUE_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
