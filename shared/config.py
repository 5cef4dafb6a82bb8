"""Every setting of the platform, read from the environment in one place.

Defaults work on a developer machine with PostgreSQL, Redis and (optionally)
RabbitMQ on localhost. Production sets at least ``SECRET_KEY``, ``DATABASE_URL``
and ``REDIS_URL``.
"""

from __future__ import annotations

import logging
import re
import threading

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The development secret. The API refuses to start with it when ``ENV=production``.
DEV_SECRET_KEY = "dev-only-insecure-secret-change-me-0123456789"  # noqa: S105
#: ``WORKER_TIMEOUT_MS`` by default: Redis consumers are woken by enqueues, so they poll
#: seldom; RabbitMQ's hand over held delayed messages on this tick.
REDIS_WORKER_TIMEOUT_MS = 1_000
RABBITMQ_WORKER_TIMEOUT_MS = 50

#: The longest one outbound send may take, per channel kind: ``(setting, how many of it)``.
#: A Meta send is an upload and a send (two Graph calls); an email, an SMTP session's
#: steps; an api callback, one attempt (doubled: its answer is read into the database).
#: :meth:`Settings.send_bound_seconds` is the one reading of it (the outbound engine's).
SEND_BOUNDS: dict[str, tuple[str, int]] = {
    "meta": ("graph_timeout_seconds", 2),
    "email": ("smtp_timeout_seconds", 4),
    "api": ("webhook_timeout_seconds", 2),
}


#: The URL schemes redis-py connects with (REDIS_URL, and BROKER_URL on Redis).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Settings(BaseSettings):
    """Typed settings; each field maps to the upper-case environment variable of its name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    env: str = Field("development", description="development, test or production")

    # --- storage -----------------------------------------------------------------------------
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/omnistream"
    db_pool_size: int = Field(10, ge=1, description="connections per process")
    db_max_overflow: int = Field(10, ge=0)
    db_statement_timeout_ms: int = Field(
        15_000, ge=0, description="server-side bound on one statement; 0 disables"
    )
    database_pgbouncer: bool = Field(
        False,
        description=(
            "DATABASE_URL goes through PgBouncer in transaction mode: no server-side"
            " prepared statements (psycopg's prepare_threshold=None) and no startup"
            " options (PgBouncer 1.18 refuses them; TimeZone is SET on connect, which"
            " PgBouncer tracks; set statement_timeout on the role instead)"
        ),
    )
    database_direct_url: str | None = Field(
        None,
        description=(
            "PostgreSQL itself, bypassing PgBouncer, for what needs a session of its own:"
            " the scheduler's leader lock and migrations (default: DATABASE_URL)"
        ),
    )
    # --- connection budget (shared/db_budget.py; totals over every machine) ---------------
    fleet_web_processes: int | None = Field(
        None, ge=0, description="gunicorn workers on all machines (default: WEB_CONCURRENCY)"
    )
    fleet_worker_processes: int | None = Field(
        None, ge=0, description="Dramatiq processes on all machines (default: WORKER_PROCESSES)"
    )
    fleet_schedulers: int = Field(1, ge=0, description="scheduler processes, standbys included")
    fleet_stream_processes: int = Field(1, ge=0, description="realtime stream servers")
    db_reserved_connections: int = Field(
        5, ge=0, description="connections kept free for psql, migrations and monitoring"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_namespace: str = Field(
        "omnistream", description="prefix of every Redis key: queues, metrics, rate limits"
    )

    # --- background work -------------------------------------------------------------------
    broker_url: str | None = Field(
        None, description="redis://... (default: REDIS_URL) or amqp://... for RabbitMQ"
    )
    redis_broker_heartbeat_timeout_ms: int = Field(
        60_000,
        ge=1_000,
        description=(
            "Redis broker only: how long a worker process may stay silent before the others"
            " take back the messages it held (Dramatiq's heartbeat timeout). Lower means a"
            " dead worker host's work resumes sooner; every live process heartbeats each time"
            " one of its idle consumers polls (WORKER_TIMEOUT_MS), so 10-15 s is safe"
        ),
    )
    worker_timeout_ms: int | None = Field(
        None,
        ge=10,
        description=(
            "how long an idle Dramatiq consumer waits before polling again. Default: 1000 on"
            " Redis, whose consumers are woken by every enqueue (workers/wake.py), so the"
            " poll only bounds what a lost wake-up costs; 50 on RabbitMQ, which pushes"
            " messages but hands over held delayed messages (retries) on this tick. Every"
            " idle consumer of every worker process polls at this rate (about 22 per"
            " process), so a short poll costs CPU whether or not there is work"
        ),
    )
    outbox_sweep_after_seconds: float = Field(
        5.0, gt=0, description="a pending outbox event older than this is re-enqueued"
    )
    outbox_sweep_batch: int = Field(500, ge=1)
    metrics_retention_minutes: int = Field(
        24 * 60, ge=5, description="how long per-minute worker metrics are kept in Redis"
    )
    metrics_flush_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="how often each process adds its worker-metric counts to Redis",
    )
    metrics_token: str | None = Field(
        None, description="when set, GET /metrics requires 'Authorization: Bearer <token>'"
    )

    # --- scheduler -----------------------------------------------------------------------------
    scheduler_lock_id: int = Field(
        7_246_091, description="Postgres advisory lock key held by the scheduler leader"
    )
    scheduler_heartbeat_seconds: float = Field(2.0, gt=0)
    scheduler_standby_poll_seconds: float = Field(
        1.0, gt=0, description="how often a standby scheduler tries to take the lead"
    )
    scheduler_heartbeat_stale_seconds: float = Field(
        30.0, gt=0, description="health reports the scheduler down past this heartbeat age"
    )

    # --- API -----------------------------------------------------------------------------------
    secret_key: str = DEV_SECRET_KEY
    access_token_ttl_seconds: int = Field(12 * 3600, ge=60)
    # NOTE: argon2id's RFC 9106 "low memory" defaults (about 90 ms and 64 MiB per hash on
    # a 2-core machine). Hashes carry their own parameters, so lowering these (the test
    # suite does, where thousands of throwaway users were a quarter of its CPU) never
    # breaks an existing password; logins verify each hash with the cost it was made at.
    password_hash_time_cost: int = Field(3, ge=1, description="argon2id passes per hash")
    password_hash_memory_kib: int = Field(65_536, ge=8, description="argon2id memory per hash")
    password_hash_parallelism: int = Field(4, ge=1, description="argon2id lanes per hash")
    cookie_secure: bool = True
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies get 413")
    agents_list_cache: bool = Field(
        True,
        description=(
            "serve unchanged agent list pages from a per-process cache, kept while the"
            " tenant's agents and roles are unchanged (shared/identity/agents_list_cache.py)"
        ),
    )
    epoch_mirror: bool = Field(
        True,
        description=(
            "keep the cache epochs in each process, told of changes by Redis's client-side"
            " caching pushes (CLIENT TRACKING), instead of one Redis round trip per request;"
            " turn off behind a Redis proxy that does not pass pushes on (shared/epoch_mirror.py)"
        ),
    )
    validate_responses: bool = Field(
        False,
        description=(
            "check every fast-path response against its declared model (the test suite"
            " turns it on; it costs CPU on every list)"
        ),
    )
    login_rate_limit_per_minute: int = Field(
        10, ge=1, description="failed logins per email and IP before 429"
    )
    login_account_failures_limit: int = Field(
        50,
        ge=1,
        description=(
            "failed logins per email from all networks together before 429 for the rest of"
            " a 15-minute window (password spraying from rotating addresses)"
        ),
    )

    # --- secrets at rest and outgoing webhooks --------------------------------------------------
    encryption_key: str | None = Field(
        None,
        description=(
            "Fernet key(s) for secrets at rest, comma-separated: the first encrypts, all"
            " decrypt (rotation). Required in production; development and test derive one"
            " from SECRET_KEY"
        ),
    )
    webhook_timeout_seconds: float = Field(
        15.0, gt=0, le=60, description="bound on one webhook attempt (connect + send + read)"
    )
    webhook_allow_http: bool = Field(
        False, description="allow http:// webhook URLs (development and tests only)"
    )
    webhook_ssrf_allowlist: str = Field(
        "",
        description=(
            "comma-separated CIDRs or host names webhooks may reach although the SSRF guard"
            " refuses them (e.g. 127.0.0.1/32 for a local receiver in development)"
        ),
    )
    webhook_max_concurrency: int = Field(
        4, ge=1, le=64, description="default in-flight attempts per webhook endpoint"
    )
    webhook_disable_after_hours: float = Field(
        120.0, gt=0, description="an endpoint failing without a success this long is disabled"
    )

    # --- channels (inbound) -------------------------------------------------------------------
    meta_app_secret: str | None = Field(
        None,
        description=(
            "the platform Meta app's secret: checks X-Hub-Signature-256 of every Meta webhook."
            " An account may instead hold its own app_secret (a tenant's own Meta app); a"
            " payload is accepted when either verifies"
        ),
    )
    meta_app_id: str | None = Field(
        None,
        description=(
            "the platform Meta app's id: a Messenger/Instagram echo sent by another app (the"
            " Page inbox, the Instagram app) is stored as an outbound message; echoes of our"
            " own sends, and every echo while this is unset, are ignored"
        ),
    )
    meta_verify_token: str | None = Field(
        None,
        description=(
            "answers Meta's GET verification handshake (hub.verify_token); an account's own"
            " verify_token credential also does"
        ),
    )
    inbound_account_cache_seconds: float = Field(
        5.0,
        ge=0,
        description=(
            "how long a web process reuses an inbound webhook's account lookup (and its app"
            " secret); 0 disables. Bounds how long a deleted account still gets payloads"
            " stored (processing drops them)"
        ),
    )
    inbound_email_max_age_seconds: int = Field(
        300, ge=10, description="an inbound email webhook signed longer ago than this gets 401"
    )
    inbound_sweep_after_seconds: float = Field(
        30.0, gt=0, description="an inbound payload still pending this long is re-enqueued"
    )
    inbound_max_attempts: int = Field(
        5, ge=1, description="processing attempts of one inbound payload before it is failed"
    )

    # --- automation ---------------------------------------------------------------------------
    automation_max_rules_per_tenant: int = Field(
        1000, ge=1, description="rules one tenant may have; creating one more is a 422 rule_limit"
    )
    automation_max_chain_depth: int = Field(
        3,
        ge=1,
        le=20,
        description="automation actions causing events that trigger rules: chains stop past this",
    )
    automation_sweep_after_seconds: float = Field(
        30.0, gt=0, description="an automation event pending or processing this long is re-driven"
    )
    automation_max_attempts: int = Field(
        5, ge=1, description="evaluations of one automation event before it is marked failed"
    )

    # --- AI knowledge ---------------------------------------------------------------------------
    knowledge_max_file_bytes: int = Field(
        25 * 1024 * 1024,
        ge=1024,
        description="largest knowledge file upload (or media file used as one): larger is 413",
    )
    knowledge_fetch_max_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, description="largest page a URL knowledge source may return"
    )
    knowledge_fetch_timeout_seconds: float = Field(
        15.0, gt=0, le=120, description="bound on fetching one URL knowledge source"
    )
    knowledge_max_attempts: int = Field(
        5, ge=1, description="ingestion attempts of one source (transient failures) before failed"
    )
    knowledge_retry_min_backoff_ms: int = Field(
        5_000, ge=10, description="first retry delay of an ingestion that failed transiently"
    )
    knowledge_retry_max_backoff_ms: int = Field(
        5 * 60_000, ge=10, description="longest retry delay of an ingestion"
    )
    knowledge_sweep_after_seconds: float = Field(
        120.0,
        gt=0,
        description=(
            "a knowledge source pending or processing this long (doubling with each attempt)"
            " is re-enqueued by the scheduler"
        ),
    )

    knowledge_embed_sweep_after_seconds: float = Field(
        300.0,
        gt=0,
        description=(
            "a chunk, QnA pair or product still without its embedding this long (its"
            " embed_items message lost) is re-enqueued by the scheduler, waiting twice as"
            " long after each send, at most an hour, and given up after the last"
        ),
    )

    knowledge_reembed_sweep_after_seconds: float = Field(
        600.0,
        gt=0,
        description=(
            "a re-embedding after an embedding model change still unfinished this long"
            " (doubling with each sweep, at most an hour) has its items re-enqueued"
        ),
    )

    # --- retention -----------------------------------------------------------------------------
    #: NOTE: at most a century: a cutoff millions of days back is past PostgreSQL's
    #: timestamps (or make_interval's integer), so every daily purge would fail.
    retention_days: int = Field(
        90,
        ge=0,
        le=36_500,
        description=(
            "finished webhook deliveries (and attempts), finished automation events (and runs),"
            " processed inbound payloads and dead letters older than this many days are"
            " deleted by the daily purge_old_rows job; 0 keeps them forever; at most 36500"
        ),
    )
    retention_batch_size: int = Field(
        5000,
        ge=1,
        le=100_000,
        description="rows deleted per statement (and transaction) by the purge",
    )

    # --- channels (outbound/media) -----------------------------------------------------------
    meta_graph_base_url: str = Field(
        "https://graph.facebook.com", description="Meta Graph API origin (tests point it locally)"
    )
    meta_graph_version: str = Field("v21.0", description="Graph API version segment, e.g. v21.0")
    graph_timeout_seconds: float = Field(
        20.0, gt=0, le=120, description="bound on one Graph API call (connect + send + read)"
    )
    smtp_timeout_seconds: float = Field(30.0, gt=0, le=300, description="bound on one SMTP step")
    smtp_ca_file: str | None = Field(
        None,
        description=(
            "PEM bundle trusted for SMTP TLS instead of the system store (a private relay's CA)"
        ),
    )
    public_base_url: str | None = Field(
        None,
        description=(
            "this API's public origin (https://inbox.example.com): starts the links of"
            " invitation emails and CSAT surveys and makes the media URLs in api-channel"
            " callbacks absolute (unset: paths, /api/media/<id>); required in production"
            " unless INVITATION_URL and CSAT_SURVEY_URL are both set"
        ),
    )
    outbound_max_retries: int = Field(
        5, ge=0, le=20, description="retries of a send after a transient provider failure"
    )
    outbound_min_backoff_ms: int = Field(2_000, ge=10, description="first retry delay")
    outbound_max_backoff_ms: int = Field(5 * 60_000, ge=10, description="longest retry delay")
    outbound_sweep_after_seconds: float = Field(
        60.0,
        gt=0,
        description="a queued message whose send is due and untouched this long is re-enqueued",
    )
    campaign_batch_size: int = Field(
        50, ge=1, le=5_000, description="recipients one run_campaign batch turns into messages"
    )
    campaign_batch_interval_ms: int = Field(
        1_000,
        ge=0,
        description=(
            "pause between the campaign batches of one sending account (all its campaigns"
            " together): with the batch size, the account's send rate"
        ),
    )
    campaign_max_in_flight: int = Field(
        500,
        ge=1,
        description=(
            "a campaign waits while this many of its messages (at least two of its batches)"
            " are still queued to send"
        ),
    )
    campaign_throttle_backoff_seconds: float = Field(
        30.0,
        ge=0,
        description="first wait after Meta throttled a campaign's sends (doubles while it lasts)",
    )
    campaign_max_backoff_seconds: float = Field(
        600.0, ge=0, description="longest wait of a throttled campaign"
    )
    outbound_claim_seconds: float = Field(
        300.0,
        gt=0,
        description=(
            "how long a worker's claim keeps other jobs off the messages it sends; a killed"
            " worker's messages are sent again once it runs out. Must be more than twice the"
            " longest send (2 x GRAPH_TIMEOUT_SECONDS, 4 x SMTP_TIMEOUT_SECONDS,"
            " 2 x WEBHOOK_TIMEOUT_SECONDS): the settings are refused otherwise"
        ),
    )
    outbound_send_threads: int = Field(
        32, ge=1, le=512, description="provider calls in flight at once per worker process"
    )
    outbound_account_concurrency: int = Field(
        16, ge=1, le=512, description="provider calls in flight per account per worker process"
    )
    media_root: str = Field("var/media", description="local media storage directory")
    media_max_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, description="largest media upload or provider download"
    )
    media_prefetch: bool = Field(
        True,
        description=(
            "fetch inbound files in the background as they arrive, so the first"
            " GET /api/media/{id} finds them stored"
        ),
    )
    media_fetch_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=60,
        description=(
            "bound on the whole fetch of an inbound file during GET /api/media/{id} (the"
            " provider's answers and the download, and the wait on another request's fetch of"
            " the same file); past it the GET answers 503 with Retry-After and stores nothing"
        ),
    )
    media_allowed_types: str = Field(
        "image/jpeg,image/png,image/gif,image/webp,video/mp4,video/3gpp,audio/ogg,audio/mpeg,"
        "audio/mp4,audio/aac,audio/amr,application/pdf,text/plain,text/csv,application/zip,"
        "application/msword,application/vnd.openxmlformats-officedocument.wordprocessingml.document,"
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet,"
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        description="comma-separated MIME types accepted (sniffed from the bytes)",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint (MinIO, moto...); unset means AWS when a bucket is",
    )
    s3_bucket: str | None = Field(None, description="bucket for media; unset: S3 disabled")
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"
    s3_media_storage: bool = Field(
        False, description="store all media in S3 (needs S3_BUCKET) instead of MEDIA_ROOT"
    )
    s3_presign_seconds: int = Field(
        900, ge=1, le=7 * 24 * 3600, description="lifetime of a presigned S3 URL"
    )

    # --- AI agents (replies) -----------------------------------------------------------------
    ai_openai_base_url: str = Field(
        "https://api.openai.com/v1",
        description=(
            "OpenAI-compatible API root for agents with provider 'openai' and no base URL of"
            " their own (hosted APIs, Ollama's http://127.0.0.1:11434/v1, vLLM, llama.cpp)"
        ),
    )
    ai_openai_api_key: str | None = Field(
        None, description="API key for agents with provider 'openai' and no key of their own"
    )
    ai_default_model: str = Field("gpt-4o-mini", description="chat model when an agent names none")
    ai_default_embedding_model: str = Field(
        "text-embedding-3-small", description="embedding model when an agent names none"
    )
    ai_model_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="bound on one model request (connect + send + read)"
    )
    ai_model_max_retries: int = Field(
        2, ge=0, le=10, description="retries of a model request answered 429/5xx or cut off"
    )
    ai_model_max_retry_after_seconds: float = Field(
        20.0, ge=0, description="longest Retry-After honoured; a longer wait is a model error"
    )
    ai_max_concurrent_calls: int = Field(
        256,
        ge=1,
        description=(
            "model calls in flight per worker process (on its event loop, not one thread"
            " each); further replies wait in the broker"
        ),
    )
    ai_max_concurrent_tests: int | None = Field(
        None,
        ge=1,
        le=64,
        description=(
            "agent tests (POST /api/ai-agents/{id}/test) waiting for the model at once per web"
            " process; more answer 429, so a slow model cannot hold every web thread (keep it"
            " below WEB_THREADS; unset: 2, and always one fewer than the process's threads)"
        ),
    )
    ai_history_messages: int = Field(
        12, ge=1, le=100, description="recent messages of the conversation put in the prompt"
    )
    ai_reply_max_attempts: int = Field(
        3, ge=1, description="generations of one reply (after lost workers) before a handoff"
    )
    ai_sweep_after_seconds: float = Field(
        10.0,
        gt=0,
        description="a reply still pending this long past its settle window is re-driven",
    )
    ai_generating_stale_seconds: float = Field(
        180.0,
        gt=0,
        description=(
            "a reply 'generating' this long lost its worker and is re-driven (above the"
            " model timeout times its attempts)"
        ),
    )
    # --- AI agents (configuration and product imports) -----------------------------------------
    ai_allow_private_base_url: bool | None = Field(
        None,
        description=(
            "let an AI agent's base_url point at loopback or private addresses over http or"
            " https (a model server such as Ollama on the same host or network). Unset: allowed"
            " outside production, refused in production, where the SSRF guard (with"
            " WEBHOOK_SSRF_ALLOWLIST) applies as for webhooks"
        ),
    )
    ai_product_import_max_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="largest product import body (CSV or JSON array); larger gets 413",
    )
    ai_product_import_batch: int = Field(
        1000, ge=1, le=10_000, description="product rows upserted per statement and commit"
    )

    # --- Meta app (onboarding) and the Graph client's retries ----------------------------------
    # NOTE: the app id (META_APP_ID), secret (META_APP_SECRET) and Graph version
    # (META_GRAPH_VERSION) are declared above; these complete what onboarding needs.
    meta_embedded_signup_config_id: str | None = Field(
        None,
        description=(
            "the Facebook Login for Business configuration id of WhatsApp Embedded Signup"
            " (served by GET /api/integrations/whatsapp/embedded-signup-config)"
        ),
    )
    meta_login_config_id: str | None = Field(
        None,
        description=(
            "the Facebook Login for Business configuration id used by the Instagram and"
            " Messenger OAuth dialogs; unset, the dialogs ask for the scopes instead"
        ),
    )
    graph_max_retries: int = Field(
        2,
        ge=0,
        le=10,
        description=(
            "retries of an onboarding / health Graph call answered 5xx, 429, a Meta"
            " throttling code, or cut off (sends retry in their worker instead)"
        ),
    )
    graph_retry_min_backoff_ms: int = Field(
        500, ge=1, description="first delay before retrying a Graph call (doubles each time)"
    )
    graph_retry_max_backoff_ms: int = Field(
        4_000, ge=1, description="longest delay between two tries of a Graph call"
    )
    graph_max_retry_after_seconds: float = Field(
        10.0,
        ge=0,
        description=(
            "longest Retry-After a request waits for; Meta asking for longer answers the"
            " caller 429 meta_rate_limited at once"
        ),
    )
    # --- channels: read receipts, early statuses, platform email -------------------------------
    early_status_ttl_seconds: float = Field(
        300.0,
        gt=0,
        description=(
            "how long a Meta status for a message id not stored yet waits for the send that"
            " records it; then it is dropped (a message some other system sent)"
        ),
    )
    platform_smtp_host: str | None = Field(
        None, description="SMTP relay of the platform's own emails (invitations); unset: none"
    )
    platform_smtp_port: int = Field(587, ge=1, le=65535)
    platform_smtp_security: str = Field("starttls", pattern="^(starttls|ssl|none)$")
    platform_smtp_username: str | None = None
    platform_smtp_password: str | None = None
    platform_email_from: str | None = Field(
        None, description="sender address of the platform's emails, e.g. no-reply@example.com"
    )
    platform_email_from_name: str = Field("OmniStream", description="sender name of those emails")
    invitation_ttl_hours: float = Field(
        72.0, gt=0, le=24 * 30, description="how long an agent invitation link stays valid"
    )
    invitation_url: str | None = Field(
        None,
        description=(
            "the set-password page an invitation links to, with {token} where the token goes;"
            " unset: PUBLIC_BASE_URL (or http://127.0.0.1:8000) + /accept-invitation?token={token}"
        ),
    )
    csat_survey_url: str | None = Field(
        None,
        description=(
            "the rating page a CSAT survey message links to, with {survey_id} and {token};"
            " unset: PUBLIC_BASE_URL (or http://127.0.0.1:8000) + /csat/{survey_id}#token={token}"
        ),
    )

    # --- billing -------------------------------------------------------------------------------
    billing_provider: str = Field(
        "fake",
        pattern="^(stripe|fake)$",
        description=(
            "payment provider: stripe (the official client, STRIPE_API_BASE selects the"
            " endpoint) or fake (no money moves: a development stand-in that always succeeds)"
        ),
    )
    stripe_api_key: str | None = Field(None, description="Stripe secret key (sk_...)")
    stripe_api_base: str = Field(
        "https://api.stripe.com", description="Stripe API base URL (tests point it at a fake)"
    )
    stripe_webhook_secret: str | None = Field(
        None, description="signing secret of Stripe's webhooks to /api/billing/webhooks/stripe"
    )
    billing_tax_rate_bps: int = Field(
        0, ge=0, le=10_000, description="tax added to invoices, in basis points (2000 = 20 %)"
    )
    billing_trial_days: int = Field(
        14, ge=0, le=365, description="length of the trial a new workspace starts with"
    )
    billing_charge_retry_hours: str = Field(
        "24,72,168",
        pattern=r"^\d+(\.\d+)?(,\d+(\.\d+)?)*$",
        description=(
            "dunning: hours after a failed charge to try again; once all failed the"
            " subscription is cancelled"
        ),
    )
    billing_provider_timeout_seconds: float = Field(
        20.0, gt=0, le=120, description="bound on one call to the payment provider"
    )

    @property
    def media_allowed_type_set(self) -> frozenset[str]:
        return frozenset(
            t.strip().lower() for t in self.media_allowed_types.split(",") if t.strip()
        )

    @property
    def graph_api_root(self) -> str:
        return f"{self.meta_graph_base_url.rstrip('/')}/{self.meta_graph_version.strip('/')}"

    @field_validator("database_url", "database_direct_url")
    @classmethod
    def _use_psycopg3(cls, value: str | None) -> str | None:
        """Accept the common ``postgresql://`` spelling and pin the psycopg 3 driver.

        WHY refuse anything else here: a URL without a scheme, or another database's,
        used to end the preflight (and every process) in a driver's traceback.
        """
        if not value:
            return None  # DATABASE_DIRECT_URL unset or empty: DATABASE_URL
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                value = "postgresql+psycopg://" + value[len(prefix) :]
        if not value.startswith("postgresql+psycopg://"):
            raise ValueError(
                "must be a PostgreSQL URL: postgresql://user:password@host:5432/database"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        """A Redis URL without its scheme (``127.0.0.1:6379``) is refused at start."""
        if not value.startswith(REDIS_SCHEMES):
            raise ValueError("must be a Redis URL: redis://host:6379/0 (or rediss://, unix://)")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        """The broker is Redis or RabbitMQ; any other scheme is refused at start."""
        if not value:
            return None  # unset or empty: REDIS_URL
        if not value.startswith((*REDIS_SCHEMES, "amqp://", "amqps://")):
            raise ValueError("must be redis://… (or rediss://, unix://) or amqp://… (RabbitMQ)")
        return value

    @field_validator("meta_graph_version")
    @classmethod
    def _graph_version(cls, value: str) -> str:
        """``v21.0``: a typo would otherwise surface as Meta's 404s on every call."""
        value = value.strip().strip("/")
        if not re.fullmatch(r"v\d+\.\d+", value):
            raise ValueError("META_GRAPH_VERSION looks like v21.0")
        return value

    @field_validator("invitation_url")
    @classmethod
    def _invitation_url_has_token(cls, value: str | None) -> str | None:
        """An invitation link without the token would lead nowhere: refuse it at start."""
        if value is not None and "{token}" not in value:
            raise ValueError("INVITATION_URL needs {token} where the token goes")
        return value

    @model_validator(mode="after")
    def _argon2_memory_covers_lanes(self) -> Settings:
        """argon2 needs 8 KiB per lane; refuse at start rather than at the first login."""
        if self.password_hash_memory_kib < 8 * self.password_hash_parallelism:
            raise ValueError(
                "PASSWORD_HASH_MEMORY_KIB must be at least 8 x PASSWORD_HASH_PARALLELISM"
            )
        return self

    @model_validator(mode="after")
    def _sends_fit_in_half_a_claim(self) -> Settings:
        """Refuse at start a send bound of half ``OUTBOUND_CLAIM_SECONDS`` or more.

        WHY: a send starts only while its claim has room left for its bound; a bound of
        half the claim or more left a send that could still be in flight when its claim
        ran out, and another worker could claim it then (a send in doubt, or sent twice).
        Refused rather than cut short: the timeout an operator set is the one in force.
        """
        half = self.outbound_claim_seconds / 2
        for kind, (field, times) in SEND_BOUNDS.items():
            timeout = getattr(self, field)
            if times * timeout >= half:
                name = field.upper()
                raise ValueError(
                    f"{name}={timeout:g} lets one {kind} send take {times} x {timeout:g}"
                    f" = {times * timeout:g} s, which must stay under half of"
                    f" OUTBOUND_CLAIM_SECONDS={self.outbound_claim_seconds:g} ({half:g} s): a"
                    " send still in flight when its claim runs out can be claimed and sent"
                    f" again by another worker. Lower {name} below {half / times:g} or raise"
                    f" OUTBOUND_CLAIM_SECONDS above {2 * times * timeout:g}"
                )
        return self

    def send_bound_seconds(self, channel: str) -> float:
        """The longest one send on ``channel`` may take (:data:`SEND_BOUNDS`)."""
        kind = channel if channel in ("email", "api") else "meta"
        field, times = SEND_BOUNDS[kind]
        return times * getattr(self, field)

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def direct_database_url(self) -> str:
        """PostgreSQL without PgBouncer: session-level locks and DDL need a server session."""
        return self.database_direct_url or self.database_url

    @property
    def uses_rabbitmq(self) -> bool:
        return self.effective_broker_url.startswith(("amqp://", "amqps://"))

    @property
    def effective_worker_timeout_ms(self) -> int:
        """``WORKER_TIMEOUT_MS``, or its default for the broker (see the field)."""
        if self.worker_timeout_ms is not None:
            return self.worker_timeout_ms
        return RABBITMQ_WORKER_TIMEOUT_MS if self.uses_rabbitmq else REDIS_WORKER_TIMEOUT_MS

    @property
    def ai_private_base_url_allowed(self) -> bool:
        """``AI_ALLOW_PRIVATE_BASE_URL``, or its default: allowed everywhere but production."""
        if self.ai_allow_private_base_url is not None:
            return self.ai_allow_private_base_url
        return self.env != "production"


class _SettingsCache:
    """The process-wide settings, read once; ``cache_clear()`` makes the next call re-read.

    NOTE: not functools.cache. Tests change the environment and clear the cache while a
    worker thread may be reading it: with functools.cache a reading that began before the
    clear was stored after it, and the next test ran with half of the old environment
    (Graph calls sent to the real Graph API, "Meta app not configured"). Here the reading
    holds the lock, so a clear waits for it and then discards it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: Settings | None = None

    def __call__(self) -> Settings:
        settings = self._settings
        if settings is not None:
            return settings
        with self._lock:
            if self._settings is None:
                self._settings = _read_settings()
            return self._settings

    def cache_clear(self) -> None:
        with self._lock:
            self._settings = None


def _read_settings() -> Settings:
    settings = Settings()
    if settings.env == "production":
        if settings.secret_key == DEV_SECRET_KEY:
            raise RuntimeError("SECRET_KEY must be set in production")
        if unlinked := links_to_localhost(settings):
            raise RuntimeError(
                f"PUBLIC_BASE_URL must be set in production: {' and '.join(unlinked)}"
                " would link to http://127.0.0.1:8000"
            )
    return settings


def links_to_localhost(settings: Settings) -> list[str]:
    """What would send people outside a link to this machine's loopback address.

    WHY: invitation emails and CSAT survey messages reach agents and customers; their
    links fall back to ``PUBLIC_BASE_URL`` and, without it, to the development origin.
    """
    if settings.public_base_url:
        return []
    missing = []
    if not settings.invitation_url:
        missing.append("invitation emails (INVITATION_URL)")
    if not settings.csat_survey_url:
        missing.append("CSAT survey links (CSAT_SURVEY_URL)")
    return missing


#: ``get_settings()``: the process-wide settings (tests call ``get_settings.cache_clear()``).
get_settings = _SettingsCache()


def warn_if_insecure(settings: Settings) -> None:
    """Say, once per start of the platform, that the development SECRET_KEY is in use.

    NOTE: called by the web process's master (``api.gunicorn_conf.on_starting``), the one
    process that exposes the instance, not by every process that reads the settings: a
    ``make run`` used to print it seven times, and warnings repeated that often are skimmed.
    """
    if settings.secret_key == DEV_SECRET_KEY and settings.env == "development":
        logging.getLogger(__name__).warning(
            "SECRET_KEY is the development default: set it before exposing this instance"
        )
