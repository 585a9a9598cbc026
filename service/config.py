"""Typed, frozen configuration.

A config is a YAML file validated by these pydantic models: unknown keys are errors, units are in the names,
and every error names the file, line and field (``load_config`` maps pydantic's error locations back to the
YAML nodes). Environment variables ``HEDGEWATCH__SECTION__KEY[__SUBKEY]`` override the file, read by
pydantic-settings: a value is text coerced by the field's type (``HEDGEWATCH__HTTP__PORT=9200`` is an int,
``HEDGEWATCH__NOTIFY__TELEGRAM__CHAT_ID=-100123`` stays the string it is), never parsed as YAML; a list or a
mapping is written as JSON. Secrets are ``SecretStr`` and can also be read from a file named by the
``*_file`` sibling key; their values never reach a log or repr.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from hedgewatch.service.errors import ConfigError, Problem, SecretError
from hedgewatch.service.redisconn import parse_redis_url
from hedgewatch.service.statefile import default_outbox_dir, default_state_dir
from hedgewatch.service.yamlfile import load_mapping, plain, validation_problems

ENV_PREFIX = "HEDGEWATCH__"
DEFAULT_CONFIG = Path(__file__).parent / "defaults" / "live.yaml"


# The longest duration a setting may give (``*_s``): ten years. Anything longer is a typo, and sleeping on or
# adding it to a timestamp would overflow the clock's range.
MAX_DURATION_S = 10 * 365 * 86400.0
# Sizes of queues, batches and streams: an allocation or a Redis argument, so bounded.
MAX_COUNT = 10_000_000
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]
Duration = Annotated[float, Field(gt=0, le=MAX_DURATION_S)]
Count = Annotated[int, Field(gt=0, le=MAX_COUNT)]


class Section(BaseModel):
    # every number finite: ``.nan``, ``.inf`` and literals beyond a double's range (``1e400``) are errors
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _bounded_duration(cls, v: Any, info: ValidationInfo) -> Any:
        if (info.field_name or "").endswith("_s") and isinstance(v, int | float) and not isinstance(v, bool) \
                and abs(v) > MAX_DURATION_S:
            raise ValueError(f"at most {MAX_DURATION_S:.0f} s (ten years)")
        return v


# Secrets are checked when resolved (``check`` and ``run`` resolve every one before anything starts: the
# Redis URL here, webhook URLs and bot tokens by the notifier's destinations), not by field validators:
# pydantic's own error text quotes the input, and the input is the secret.
def has_control(text: str) -> bool:
    """A control character (C0, DEL or C1), which no URL, token or password may hold."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)



# --- sources -------------------------------------------------------------------------------------------


# What a source can subscribe; ``channels: null`` means every one but candles and futures (the venue's dated
# futures quotes, for the term structure and the roll cost).
FeedChannel = Literal["quotes", "trades", "mark", "funding", "open_interest", "candles", "composite_index",
                      "futures"]


SourceMarket = Literal["spot", "perp"]


class SourceConfig(Section):
    """One venue connection set. ``symbols`` are asset names (``BTC``); the connector maps them to the
    venue's instruments from the venue's own instrument list.

    ``market`` is what prices the source in the oracle: ``spot`` (the default) subscribes the venue's spot
    pair of each asset (``BTCUSDT``, ``BTC-USDT``; quoted in ``quote``, USDT for a coin-margined source) beside
    its perpetual, and the oracle takes the spot quote while it is fresh and the perpetual's while it is not
    (``oracle.spot_max_age_s``), as a venue's index engine does; ``perp`` prices the source from its
    perpetual only. The spot market is reached at ``spot_ws_url``/``spot_rest_url``; without them at the
    venue's public spot endpoints when the source uses the venue's public endpoints (no ``ws_url``), and
    nowhere when ``ws_url`` points elsewhere (a proxy or the simulator serves what it serves: name its spot
    endpoints), the source then priced from its perpetual."""

    exchange: str
    name: str | None = None
    symbols: tuple[str, ...]
    ws_url: str | None = None
    rest_url: str | None = None
    channels: tuple[FeedChannel, ...] | None = None
    quote: str = "USDT"
    open_interest_poll_s: float = Field(default=10.0, gt=0)
    max_streams_per_connection: int = Field(default=200, ge=1, le=1024)
    weight: float = Field(default=1.0, gt=0)
    enabled: bool = True
    market: SourceMarket = "spot"
    spot_ws_url: str | None = None
    spot_rest_url: str | None = None

    @property
    def source_id(self) -> str:
        """The name this source goes by in events, metrics and the oracle (several sources may share a
        protocol, e.g. two venues speaking Binance's): ``name`` when given, else the exchange id."""
        return self.name or self.exchange

    @field_validator("symbols")
    @classmethod
    def _upper(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one symbol is required")
        return tuple(s.upper() for s in v)


# --- index ---------------------------------------------------------------------------------------------

Weighting = Literal["cap", "free_float", "equal", "capped", "fixed"]


class RebalanceConfig(Section):
    schedule: Literal["monthly", "quarterly", "manual"] = "quarterly"
    day: Literal["last_business"] | Annotated[int, Field(ge=1, le=31)] = "last_business"
    time_utc: str = Field(default="16:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    preview_s: float = Field(default=86400.0, ge=0)


class SelectionConfig(Section):
    """Rules to select constituents instead of a fixed list."""

    top_n: int = Field(gt=0, le=1000)
    provider: Literal["file", "rest"] = "file"
    path: str | None = None
    url: str | None = None
    min_volume_usd: float = Field(default=0.0, ge=0)
    rank_buffer: int = Field(default=2, ge=0, le=1000)
    exclude: tuple[str, ...] = ()
    # Market caps move slowly and matter only at a rebalance; hourly keeps well inside public rate limits.
    refresh_s: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SelectionConfig:
        if self.provider == "rest" and not self.url:
            raise ValueError("provider 'rest' needs a url")
        if self.provider == "file" and not self.path:
            raise ValueError("provider 'file' needs a path")
        return self


class FuturesLegConfig(Section):
    """The index's futures leg. ``synthetic``: the basket of the members' perpetuals, in index points.
    ``contract``: a real contract (``symbol`` on ``exchange``), read in index points: its price (in USD)
    divided by ``multiplier``, the contract's price per index point; without a multiplier, ``underlying``
    (the asset the contract tracks) scales it by the index level over that asset's oracle price, so the basis
    is the contract's own premium over its underlying; ``underlying`` the index's own name is a contract on
    the index, quoted in its points (multiplier 1). ``contract_size`` (units of the underlying a contract)
    makes the contract the hedge instrument when ``portfolio.instrument`` is not set. ``expiry`` defaults to
    the one the instrument id encodes (``BTCUSDT_261225``, ``BTC-USD-261225``: 08:00 UTC that day)."""

    mode: Literal["synthetic", "contract"] = "synthetic"
    exchange: str | None = None
    symbol: str | None = None
    underlying: str | None = None
    multiplier: float | None = Field(default=None, gt=0, validate_default=True)
    contract_size: float | None = Field(default=None, gt=0)
    expiry: str | None = None

    @field_validator("underlying")
    @classmethod
    def _upper_underlying(cls, v: str | None) -> str | None:
        return v.upper() if v else v

    @field_validator("multiplier")
    @classmethod
    def _known_multiplier(cls, v: float | None, info: ValidationInfo) -> float | None:
        d = info.data
        if v is None and d.get("mode") == "contract" and d.get("symbol") and not d.get("underlying"):
            raise ValueError(
                f"cannot read {d['symbol']} in index points: give futures.multiplier (the contract's price per "
                "index point) or futures.underlying (the asset it tracks, or the index's own name)")
        return v

    @field_validator("expiry")
    @classmethod
    def _iso_expiry(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                datetime.fromisoformat(v)
            except ValueError:
                raise ValueError(f"not an ISO 8601 date or time: {v!r}") from None
        return v

    @model_validator(mode="after")
    def _contract(self) -> FuturesLegConfig:
        if self.mode == "contract" and not self.symbol:
            raise ValueError("mode 'contract' needs the contract's symbol (its venue id, e.g. BTCUSDT_261225)")
        return self


class IndexConfig(Section):
    name: str = "HW"
    constituents: tuple[str, ...] = ()
    selection: SelectionConfig | None = None
    weighting: Weighting = "equal"
    weights: dict[str, NonNegative] = Field(default_factory=dict)
    market_caps: dict[str, Positive] = Field(default_factory=dict)
    free_float: dict[str, Fraction] = Field(default_factory=dict)
    cap_ratio: float = Field(default=0.25, gt=0, le=1)
    base_level: float = Field(default=1000.0, gt=0)
    rebalance: RebalanceConfig = RebalanceConfig()
    futures: FuturesLegConfig = FuturesLegConfig()
    publish_interval_s: float = Field(default=1.0, ge=0)
    # Track a venue's published composite index (e.g. Binance "DEFIUSDT"): its units are our units and its
    # published value is the reference for the tracking error. ``definition_path`` holds a saved
    # ``/fapi/v1/indexInfo`` response; without it the first ``compositeIndex`` event defines the basket.
    track: str | None = None
    definition_path: str | None = None
    derivatives_max_age_s: float = Field(default=60.0, gt=0)
    flat_band_ratio: float = Field(default=0.0005, ge=0)
    oi_windows_s: dict[str, Duration] = Field(
        default_factory=lambda: {"1h": 3600.0, "4h": 14400.0, "24h": 86400.0}
    )

    @model_validator(mode="after")
    def _check(self) -> IndexConfig:
        if not self.constituents and self.selection is None and self.track is None:
            raise ValueError("either constituents, selection or track is required")
        if self.weighting == "fixed" and not self.weights:
            raise ValueError("weighting 'fixed' needs weights")
        if self.weighting in ("cap", "capped", "free_float") and not self.market_caps and self.selection is None:
            raise ValueError(f"weighting '{self.weighting}' needs market_caps or a selection provider")
        return self


# --- oracle --------------------------------------------------------------------------------------------


class OracleConfig(Section):
    max_age_s: float = Field(default=10.0, gt=0)
    exclude_band_ratio: float = Field(default=0.05, gt=0, lt=1)
    readmit_after_s: float = Field(default=60.0, ge=0)
    quorum: int = Field(default=1, ge=1, le=1000)
    weights: dict[str, Positive] = Field(default_factory=dict)
    markets: tuple[str, ...] = ("perp", "spot")
    stable_quotes: tuple[str, ...] = ("USDT", "USDC")
    max_jump_ratio: float = Field(default=0.5, gt=0)
    # with only two valid sources there is no majority: they must agree within this (tighter) band, else
    # the last value is held, and the status degrades once they have disagreed for pair_hold_s
    pair_band_ratio: float = Field(default=0.01, gt=0, lt=1)
    pair_hold_s: float = Field(default=5.0, ge=0)
    use_venue_index: bool = False
    # A source of ``market: spot`` is priced by its spot quote while that is at most ``spot_max_age_s`` old
    # (and never more than half of ``max_age_s``, so the perpetual stands in before the source goes stale),
    # else by its perpetual; spot takes over again once it has quoted with no gap longer than that for
    # ``spot_return_s`` (a flickering spot feed does not move the source back and forth).
    spot_max_age_s: float = Field(default=5.0, gt=0)
    spot_return_s: float = Field(default=10.0, ge=0)


# --- portfolio / hedge ---------------------------------------------------------------------------------


class BalancesConfig(Section):
    """Read-only balances and hedge position from one venue through ccxt. The credentials are read from the
    environment variables named here; the file never holds them."""

    exchange: str
    api_key_env: str = "HEDGEWATCH_BALANCES_API_KEY"
    secret_env: str = "HEDGEWATCH_BALANCES_SECRET"
    password_env: str | None = None
    position_symbol: str | None = None
    assets: tuple[str, ...] = ()
    min_units: float = Field(default=0.0, ge=0)
    poll_s: float = Field(default=60.0, gt=0)
    rest_url: str | None = None  # the venue's REST base (scheme and host); each endpoint keeps its path


class HedgeInstrumentConfig(Section):
    """The contract the hedge is held in (``portfolio.instrument``). Without it the hedge is a linear index
    future of ``portfolio.multiplier`` USD a point at the index's futures price. ``kind: linear`` with an
    ``asset`` is a USD(T)-margined contract of ``contract_size`` units of that asset; ``kind: inverse`` a
    coin-margined one of ``contract_size`` USD face value (Binance COIN-M ``BTCUSD_PERP``: 100, the others
    10; Bybit inverse ``BTCUSD``: 1; OKX ``BTC-USD-SWAP``: its ``ctVal``), valued at ``asset``'s mark (else
    its oracle price), with P&L, margin and funding in ``asset``."""

    kind: Literal["linear", "inverse"] = "linear"
    asset: str | None = None
    contract_size: float = Field(gt=0)
    exchange: str | None = None
    symbol: str | None = None
    leverage: float = Field(default=1.0, gt=0)

    @field_validator("asset")
    @classmethod
    def _upper_asset(cls, v: str | None) -> str | None:
        return v.upper() if v else v

    @model_validator(mode="after")
    def _inverse_needs_coin(self) -> HedgeInstrumentConfig:
        if self.kind == "inverse" and not self.asset:
            raise ValueError("an inverse (coin-margined) instrument needs the coin it settles in: 'asset'")
        return self


class PortfolioConfig(Section):
    holdings: dict[str, float] = Field(default_factory=dict)
    cash_usd: float = 0.0
    hedge_ratio: float = Field(default=0.0, ge=0, le=1.5)
    hedge_ratio_min: float = Field(default=0.0, ge=0)
    hedge_ratio_max: float = Field(default=1.0, le=1.5)
    multiplier: float = Field(default=1.0, gt=0)
    lot_size: float = Field(default=0.001, gt=0)
    position_contracts: float = 0.0
    tolerance_ratio: float = Field(default=0.05, ge=0)
    drift_min_interval_s: float = Field(default=300.0, ge=0)
    remind_s: float = Field(default=0.0, ge=0)
    advice_ttl_s: float = Field(default=86_400.0, gt=0)
    assume_executed: bool = False
    beta: float | Literal["rolling"] = 1.0
    beta_window: int = Field(default=720, ge=3, le=1_000_000)
    beta_interval_s: float = Field(default=3600.0, gt=0)
    balances: BalancesConfig | None = None
    instrument: HedgeInstrumentConfig | None = None

    @model_validator(mode="after")
    def _range(self) -> PortfolioConfig:
        if self.hedge_ratio_min > self.hedge_ratio_max:
            raise ValueError("hedge_ratio_min is above hedge_ratio_max")
        return self


# --- rules ---------------------------------------------------------------------------------------------


class TrendlineConfig(Section):
    """Either two ``anchors`` (``[time, price]``, time as epoch seconds or ISO 8601) or a line ``fit`` under
    the swing lows (a support; ``highs``: over the swing highs, a resistance) of ``timeframe`` bars within
    ``window``: through two swing pivots, never crossed by the pivots or closes between them."""

    anchors: tuple[tuple[float | str, float], tuple[float | str, float]] | None = None
    fit: Literal["lows", "highs"] = "lows"
    timeframe: str = "1d"
    window: str = "180d"


class RulesConfig(Section):
    """Rule files (``builtin:default`` is the bundled trigger matrix), named price levels and trendlines the
    rules can refer to (``level("R1")``, ``trendline("long_term")``), and the swing-pivot strength."""

    files: tuple[str, ...] = ("builtin:default",)
    eval_interval_s: float = Field(default=1.0, ge=0)
    startup_grace_s: float = Field(default=30.0, ge=0)
    levels: dict[str, float] = Field(default_factory=dict)
    trendlines: dict[str, TrendlineConfig] = Field(default_factory=dict)
    pivot_strength: int = Field(default=3, ge=1, le=50)


# --- outputs -------------------------------------------------------------------------------------------


class RedisConfig(Section):
    url: SecretStr | None = None
    url_file: str | None = None
    prefix: str = "hedgewatch"
    stream_maxlen: Count = 100_000
    heartbeat_ttl_s: float = Field(default=15.0, gt=0)
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    hedge_queue_size: Count = 1_000
    batch_size: Count = 100
    # the alert outbox and the local state copy; by default (filled in by Config, which knows the index)
    # <user state dir>/<INDEX>: $XDG_STATE_HOME/hedgewatch/<INDEX>, else ~/.local/state/hedgewatch/<INDEX>
    outbox_dir: str = Field(default_factory=lambda: str(default_state_dir()))

    def resolved_url(self) -> str | None:
        """The Redis URL from the config, the environment or ``url_file``; a SecretError naming the setting
        (never the value) when the file is unreadable or the URL does not parse. ``check`` and ``run`` call
        it before anything starts."""
        url = read_secret(self.url, self.url_file, "redis.url")
        if url is not None:
            where = f" (read from {self.url_file})" if self.url is None else ""
            if has_control(url):
                raise SecretError(f"redis.url contains a control character{where}")
            try:
                parse_redis_url(url)
            except ValueError as exc:
                raise SecretError(f"redis.url{where}: {exc}") from None
        return url


class ScaleConfig(Section):
    """The scaled layout (``hedgewatch ingest`` shards, ``hedgewatch run --bus redis`` engines): event
    streams, index leases and the fencing of their writes (docs/scale.md)."""

    # an index's lease: its owner renews it every lease_s/3; a dead owner's index is taken over within
    # two lease periods (the lease runs out, then the next attempt of a standby, at most lease_s/3 later)
    lease_s: float = Field(default=4.0, gt=0.2, le=300)
    # entries kept per event stream (MAXLEN ~); an entry holds one flush's events of that asset
    events_maxlen: Count = 10_000
    # events a shard writes in one pipelined flush at most, and entries an engine reads in one call
    batch_max: Count = 4_096
    # how long the ids of alerts already in the stream are remembered (a new owner never adds one twice)
    alert_ids_ttl_s: float = Field(default=7 * 86400.0, gt=0)
    # this process's name in the lease and its heartbeat (default: host name and process id)
    process_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")


class HttpConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)
    # how people reach this daemon (behind a proxy, another host name): the base of each alert's
    # generatorURL; without it, http://host:port
    external_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    # POST endpoints (rebalance, hedge acknowledgement) over TCP need this token (a file holding it, read at
    # start); without it they are served only on the Unix socket
    token_file: str | None = None
    # a Unix socket serving the same endpoints, POSTs without a token (the socket file is 0600)
    unix_socket: str | None = None
    # Host names the port answers to besides loopback, the bound host and external_url's (DNS rebinding)
    allowed_hosts: tuple[str, ...] = ()
    # POSTs per endpoint: a token bucket of control_burst refilled at control_rate_per_s
    control_rate_per_s: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    control_burst: int = Field(default=5, ge=1, le=1000)
    # a connection idle, or still sending its request, this long is closed
    timeout_s: float = Field(default=5.0, gt=0, le=3600, allow_inf_nan=False)

    def base_url(self) -> str:
        if self.external_url:
            return self.external_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class SlackConfig(Section):
    """A Slack incoming webhook. The webhook URL is the secret (it carries its own credentials); tests and
    proxies point it anywhere, loopback included."""

    webhook_url: SecretStr | None = None
    webhook_url_file: str | None = None
    severities: tuple[str, ...] = ()
    # Slack documents 1 message per second per incoming webhook, short bursts tolerated
    rate_limit_per_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)

    def resolved_url(self) -> str:
        return require_secret(self.webhook_url, self.webhook_url_file, "notify.slack.webhook_url")


class TelegramConfig(Section):
    """A Telegram bot posting to one chat through the Bot API's ``sendMessage`` (HTML parse mode)."""

    bot_token: SecretStr | None = None
    bot_token_file: str | None = None
    chat_id: str | None = None
    api_url: str = "https://api.telegram.org"
    severities: tuple[str, ...] = ()
    # Telegram's FAQ: about 1 message per second in one chat, at most 30 per second overall per bot
    rate_limit_per_s: float = Field(default=1.0, gt=0)
    global_rate_limit_per_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    bot: TelegramBotConfig | None = None

    def resolved_token(self) -> str:
        return require_secret(self.bot_token, self.bot_token_file, "notify.telegram.bot_token")


class AlertmanagerConfig(Section):
    """Push every alert to Alertmanager's ``/api/v2/alerts`` the way Prometheus does: firing alerts re-sent
    every ``resend_interval_s`` with ``endsAt`` four intervals ahead (so Alertmanager never resolves one on
    its own while it fires), resolved ones sent with their end for ``resolved_retention_s``. Alertmanager
    then routes, groups, silences and repeats. ``urls`` are the base URLs of every member of an
    Alertmanager cluster (credentials in a URL are treated as a secret: never logged)."""

    urls: tuple[str, ...] = Field(min_length=1)
    timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    resend_interval_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    resolved_retention_s: float = Field(default=900.0, ge=0, allow_inf_nan=False)


class TelegramBotConfig(Section):
    """Answer commands (/status, /hedge, /ack, /silence, /help) from the configured chats, by long polling
    ``getUpdates`` with the notifier's bot token. Updates from any other chat are ignored and counted."""

    enabled: bool = True
    allowed_chat_ids: tuple[str, ...] = ()  # empty: the chat alerts go to
    poll_timeout_s: int = Field(default=30, ge=1, le=600)
    # the index /status and /ack mean without an argument (default: the config's index)
    index: str | None = None


class RouteConfig(Section):
    """Send alerts matching every condition here to ``destination``. Every matching route delivers (an
    alert may go to Slack and Telegram); two routes to the same destination: the first wins."""

    destination: Literal["slack", "telegram"]
    severities: tuple[str, ...] = ()
    match: dict[str, str] = Field(default_factory=dict)  # exact matches on rule, index, severity or a label
    group_by: tuple[str, ...] = ("rule", "index")
    group_wait_s: float | None = Field(default=None, ge=0)
    group_interval_s: float | None = Field(default=None, ge=0)
    repeat_interval_s: float | None = Field(default=None, ge=0)
    send_resolved: bool = True


class TemplatesConfig(Section):
    """Message templates: ``{field}`` placeholders (alert fields, ``label_<name>``, ``value_<name>``,
    ``annotation_<name>``, ``hedge_text``, ``STATUS``), nothing else is evaluated. Values are escaped for
    the destination's markup; the template's own markup is kept."""

    slack_title: str = "*[{STATUS}] {rule}* on {index} ({severity})"
    slack_line: str = "{summary}{hedge_text}"
    telegram_title: str = "<b>[{STATUS}] {rule}</b> on {index} ({severity})"
    telegram_line: str = "{summary}{hedge_text}"


class NotifyConfig(Section):
    slack: SlackConfig | None = None
    telegram: TelegramConfig | None = None
    alertmanager: AlertmanagerConfig | None = None
    routes: tuple[RouteConfig, ...] = ()
    templates: TemplatesConfig = TemplatesConfig()
    group_wait_s: float = Field(default=0.0, ge=0)
    group_interval_s: float = Field(default=0.0, ge=0)
    repeat_interval_s: float = Field(default=4 * 3600.0, ge=0)
    consumer_group: str = "notify"
    consumer_name: str | None = None
    reclaim_idle_s: float = Field(default=60.0, gt=0)
    retry_min_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    # a service's Retry-After (or Telegram's retry_after) is honoured up to this long; an absurd or
    # infinite one must not stop a destination for ever
    retry_after_max_s: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    # re-sends of a message whose request timed out after it was sent (it may have arrived: Slack and
    # Telegram cannot deduplicate); each one waits twice as long for the answer
    max_unconfirmed_retries: int = Field(default=1, ge=0, le=10)
    max_alert_age_s: float = Field(default=86400.0, gt=0)
    dedup_retention_s: float = Field(default=7 * 86400.0, gt=0)
    shutdown_drain_s: float = Field(default=5.0, ge=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)


class DailySummaryConfig(Section):
    """A daily alert with the hedge ledger's figures (off unless switched on)."""

    enabled: bool = False
    time_utc: str = Field(default="00:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    severity: str = "info"


class LedgerConfig(Section):
    """The hedge ledger's fill and carry assumptions, live and in backtests: a fill is the futures price
    moved ``slippage_bps`` against the trade, plus ``fee_bps`` of the notional; funding is settled every
    ``funding_interval_h`` hours from midnight UTC."""

    fee_bps: float = Field(default=4.0, ge=0)
    slippage_bps: float = Field(default=2.0, ge=0)
    funding_interval_h: float = Field(default=8.0, gt=0)
    daily_summary: DailySummaryConfig = DailySummaryConfig()


class Config(Section):
    sources: tuple[SourceConfig, ...]
    index: IndexConfig
    oracle: OracleConfig = OracleConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    rules: RulesConfig = RulesConfig()
    redis: RedisConfig = Field(default_factory=RedisConfig)
    http: HttpConfig = HttpConfig()
    notify: NotifyConfig = NotifyConfig()
    ledger: LedgerConfig = LedgerConfig()
    # the events' way from the connectors to the engine: in this process (memory), or over Redis Streams
    # from `hedgewatch ingest` shards (redis: the scaled layout, whose Redis names carry hash tags)
    bus: Literal["memory", "redis"] = "memory"
    scale: ScaleConfig = ScaleConfig()
    log_level: str = "INFO"
    # the bus between connectors and the pricing core; when full the oldest tick is dropped and counted
    ingest_queue_size: Count = 10_000

    @model_validator(mode="before")
    @classmethod
    def _default_outbox(cls, data: Any) -> Any:
        """Without ``redis.outbox_dir``, the index's folder in the user's state directory."""
        if not isinstance(data, dict):
            return data
        redis, index = data.get("redis", {}), data.get("index")
        if not isinstance(redis, dict) or redis.get("outbox_dir") is not None:
            return data
        name = index.get("name") if isinstance(index, dict) else None
        outbox = default_outbox_dir(name if isinstance(name, str) else IndexConfig.model_fields["name"].default)
        return {**data, "redis": {**redis, "outbox_dir": str(outbox)}}

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        level = v.upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"not a log level: one of {', '.join(LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _constituents_have_sources(self) -> Config:
        ids = [src.source_id for src in self.sources]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"sources share a name, give each a distinct 'name': {', '.join(dupes)}")
        quoted = {s for src in self.sources if src.enabled for s in src.symbols}
        missing = [c for c in self.index.constituents if c not in quoted]
        if missing:
            raise ValueError(f"index constituents without any source: {', '.join(missing)}")
        fut = self.index.futures
        if fut.mode == "contract" and fut.underlying and fut.underlying not in quoted | {self.index.name}:
            raise ValueError(f"index.futures.underlying: {fut.underlying} is neither the index ({self.index.name}) "
                             "nor an asset a source quotes")
        return self


# --- secrets -------------------------------------------------------------------------------------------


def read_secret(value: SecretStr | None, path: str | None, name: str) -> str | None:
    """The secret's value from the config/env, else from the file it names; None when neither is set.
    Errors name the setting and the file, never the value."""
    if value is not None:
        secret = value.get_secret_value()
    elif path is None:
        return None
    else:
        try:
            secret = Path(path).read_text().strip()
        except OSError as exc:
            raise SecretError(f"{name}: cannot read secret file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SecretError(f"{name}: secret file {path} is not UTF-8 text") from exc
    return secret


def require_secret(value: SecretStr | None, path: str | None, name: str) -> str:
    """Like ``read_secret``, but a missing secret is a ``SecretError`` naming the setting."""
    secret = read_secret(value, path, name)
    if not secret:
        env = ENV_PREFIX + "__".join(name.upper().split("."))
        raise SecretError(f"{name} is not set: give it in the config, in {env}, "
                          f"or name a file in {name}_file")
    return secret


# --- loading -------------------------------------------------------------------------------------------


class _NotJson:
    """Stands in for an environment value that should have been JSON (a list or a mapping) and is not."""


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    """pydantic-settings' environment source over a given mapping (``os.environ`` in production, a dict in
    tests), for the fields of ``Config``: ``HEDGEWATCH__A__B`` is ``a.b``, case-insensitive. pydantic-settings
    loads asyncio, so it is imported here, where the environment is read, and not with the models, which
    the pure core imports."""
    from pydantic_settings import EnvSettingsSource
    from pydantic_settings.sources.utils import parse_env_vars

    class EnvSource(EnvSettingsSource):
        def _load_env_vars(self) -> Mapping[str, str | None]:
            return parse_env_vars(env, False, False, None)

        def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
            try:
                return super().decode_complex_value(field_name, field, value)
            except ValueError:
                return _NotJson()  # reported under the variable's name, without its value

    source = EnvSource(Config, case_sensitive=False, env_prefix=ENV_PREFIX,  # type: ignore[arg-type]
                       env_nested_delimiter="__")
    return source()


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str], list[Problem]]:
    """The overrides in ``env`` as a nested dict, the variable behind each dotted path, and the problems
    (a top-level name that is no setting, a list or mapping that is not JSON)."""
    names: dict[tuple[str, ...], str] = {}
    problems = []
    for key in env:
        if not key.upper().startswith(ENV_PREFIX) or key.upper() == ENV_PREFIX:
            continue
        path = tuple(p.lower() for p in key[len(ENV_PREFIX):].split("__") if p)
        names[path] = key
        if path and path[0] not in Config.model_fields:
            problems.append(Problem(key, None, None, ".".join(path), "unknown setting"))
    values = _env_values(env)

    def drop_bad_json(node: dict[str, Any], path: tuple[str, ...]) -> None:
        for k, v in list(node.items()):
            here = (*path, str(k).lower())
            if isinstance(v, _NotJson):
                del node[k]
                var = names.get(here) or ENV_PREFIX + "__".join(p.upper() for p in here)
                problems.append(Problem(var, None, None, ".".join(here),
                                        "not valid JSON (a list or a mapping is given as JSON)"))
            elif isinstance(v, dict):
                drop_bad_json(v, here)

    drop_bad_json(values, ())
    return values, names, problems


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> None:
    """``over`` merged into ``base`` in place, mappings key by key."""
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = dict(v) if isinstance(v, Mapping) else v


def _from_env(problem: Problem, names: Mapping[tuple[str, ...], str]) -> Problem:
    """A problem in a value that came from the environment, reported under its variable, not the file."""
    field = tuple(problem.field.lower().split(".")) if problem.field else ()
    for n in range(len(field), 0, -1):
        var = names.get(field[:n])
        if var is not None:
            return Problem(var, None, None, problem.field, problem.message)
    return problem


def parse_config(text: str, file: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Parse and validate config text; raises ConfigError listing every problem."""
    root = load_mapping(text, file, "the config")
    return config_from_dict(plain(root), file, env, root)


def config_from_dict(
    data: dict[str, Any], file: str = "<config>", env: Mapping[str, str] | None = None, root: Any = None
) -> Config:
    """Validate an already-parsed config (e.g. one the demo builds), applying environment overrides.
    ``root`` is the YAML node tree, when there is one, for line numbers in errors."""
    data = plain(data)
    overrides, names, problems = _env_overrides(os.environ if env is None else env)
    _merge(data, overrides)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems += [_from_env(p, names) for p in validation_problems(exc, file, root)]
        raise ConfigError(problems) from exc
    if problems:
        raise ConfigError(problems)
    return cfg


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load a config file (the bundled live default when ``path`` is None)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([Problem(str(p), None, None, "", f"cannot read: {exc.strerror}")]) from exc
    cfg = parse_config(text, str(p), env)
    return _relative_to(cfg, p.parent)


def _relative_to(cfg: Config, base: Path) -> Config:
    """Rule files named relative to the config file are found there, whatever the working directory."""
    files = tuple(f if f.startswith("builtin:") or Path(f).is_absolute() else str(base / f)
                  for f in cfg.rules.files)
    if files == cfg.rules.files:
        return cfg
    return cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"files": files})})
