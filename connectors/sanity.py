"""Stateful sanity checks every native decoder runs before a price or a sequence number is believed.

A venue frame is hostile until proven plausible. The checks are symmetric (the bid, the ask, the spread and
the mid are all checked, never only one side) and stateful (against the instrument's own last accepted
price and sequence number, kept on its ``Route``). They are split into *check* and *commit*: a decoder runs
every check of a frame first and commits only when the whole frame is accepted, so a rejected frame never
moves a reference, a sequence number or anything else.

Prices (``check_price``/``check_quote``, committed by ``accept_price``):

- finite, positive, below ``MAX_PRICE`` (``positive``), bid not above ask (``crossed``);
- a spread wider than ``MAX_SPREAD_RATIO`` of the mid is not a book to price from (``wide_spread``);
- against the last accepted price: a move beyond ``MAX_STEP_RATIO`` within ``STEP_WINDOW_S`` of it, or
  beyond ``MAX_JUMP_FACTOR`` whatever its age, is ``absurd``. A lasting new level (a re-denomination, a
  real gap while the feed was quiet) is adopted after ``REANCHOR_FRAMES`` consecutive rejected prices that
  agree with each other within ``REANCHOR_BAND_RATIO``; any accepted price in between resets the count, so
  scattered hostile frames never re-anchor anything.

Sequence numbers (``check_seq``, committed by ``accept_seq``): a number not above the last accepted one is
``out_of_order``; one further ahead than ``MAX_SEQ_JUMP`` is ``sequence_jump`` and is not adopted (one
frame with ``u=2**62`` must not black out the channel). A stream that really restarted its numbering is
followed after ``REANCHOR_FRAMES`` consecutive rejected numbers that ascend among themselves within the
bound. A new connection or a re-subscribe starts the expectation afresh (``seq = 0``).

Venue text (``venue_text``) is escaped and truncated before it reaches a log line or a status field.
"""

from __future__ import annotations

import math
from typing import Any

from hedgewatch.service.errors import RejectedMessage

MAX_PRICE = 1e9
MAX_JUMP_FACTOR = 3.0
MAX_STEP_RATIO = 0.03  # below the oracle's 5 % exclusion band: one frame cannot get a venue excluded
STEP_WINDOW_S = 5.0
MAX_SPREAD_RATIO = 0.05
REANCHOR_FRAMES = 20
REANCHOR_BAND_RATIO = 0.02
MAX_SEQ_JUMP = 10**9
VENUE_TEXT_MAX = 120


def positive(x: float, what: str) -> float:
    """``x`` when it is a finite, positive, non-absurd number, else a reject."""
    if 0.0 < x < MAX_PRICE:
        return x
    if x != x or x in (math.inf, -math.inf):
        raise RejectedMessage("non_finite", what)
    if x <= 0.0:
        raise RejectedMessage("non_positive", what)
    raise RejectedMessage("absurd", what)


def book_reject(bid: float, ask: float, what: str) -> None:
    """Raise the reason a ``(bid, ask)`` pair failed ``0 < bid <= ask < MAX_PRICE``."""
    positive(bid, "bid")
    positive(ask, "ask")
    raise RejectedMessage("crossed", what)


def check_quote(r: Any, bid: float, ask: float, now: float) -> None:
    """Every check of one top of book (both sides, spread, mid against the reference); raises or returns.
    Commit with ``accept_price(r, (bid + ask) * 0.5, now)`` once the whole frame is accepted."""
    if not (0.0 < bid <= ask < MAX_PRICE):
        book_reject(bid, ask, r.key)
    if ask - bid > (ask + bid) * (MAX_SPREAD_RATIO * 0.5):
        raise RejectedMessage("wide_spread", r.key)
    if not (r.lo < bid and ask < r.hi) or r.streak:
        check_price(r, (bid + ask) * 0.5, now, bid, ask)


def check_price(r: Any, price: float, now: float, lo: float | None = None, hi: float | None = None) -> None:
    """``price`` (and a quote's two sides ``lo``..``hi``) against the route's last accepted price."""
    ref = r.ref
    if not ref:
        return
    lo = price if lo is None else lo
    hi = price if hi is None else hi
    step = MAX_STEP_RATIO if now - r.ref_at <= STEP_WINDOW_S else MAX_JUMP_FACTOR - 1.0
    if lo > ref / (1.0 + step) and hi < ref * (1.0 + step):
        if r.streak:
            r.streak = 0  # accepted-looking: whatever streak was building is over (committed or not)
        return
    # a rejected price: count it towards a re-anchor only while the rejected prices agree with each other
    anchor = r.anchor
    if r.streak and abs(price / anchor - 1.0) <= REANCHOR_BAND_RATIO:
        r.streak += 1
    else:
        r.anchor = price
        r.streak = 1
    if r.streak < REANCHOR_FRAMES:
        raise RejectedMessage("absurd", r.key)
    r.streak = 0  # a lasting new level: this price is accepted and becomes the reference


def accept_price(r: Any, price: float, now: float) -> None:
    """Commit an accepted price as the route's reference."""
    r.ref = price
    r.ref_at = now
    r.lo = price / (1.0 + MAX_STEP_RATIO)
    r.hi = price * (1.0 + MAX_STEP_RATIO)
    r.streak = 0


def check_seq(r: Any, seq: int, strict: bool = True) -> None:
    """``seq`` against the route's last accepted sequence number (0: none since the connection opened; a
    re-subscribe since the last accepted one starts afresh too); ``strict=False`` lets a frame repeat the
    last number (Bybit's ``cs`` when the book did not change). Commit with ``accept_seq``."""
    last = r.seq
    if not last or last < seq <= last + MAX_SEQ_JUMP or (not strict and seq == last):
        if r.seq_streak:
            r.seq_streak = 0
        return
    if r.resubscribed_at > r.seq_at:  # re-subscribed since: the venue's numbering starts afresh
        r.seq_streak = 0
        return
    if r.seq_streak and r.seq_anchor < seq <= r.seq_anchor + MAX_SEQ_JUMP:
        r.seq_streak += 1
    else:
        r.seq_streak = 1
    r.seq_anchor = seq
    if r.seq_streak < REANCHOR_FRAMES:
        raise RejectedMessage("out_of_order" if seq <= last else "sequence_jump", r.key)
    r.seq_streak = 0  # the venue renumbered its stream: follow it


def accept_seq(r: Any, seq: int, now: float) -> None:
    r.seq = seq
    r.seq_at = now


def venue_text(value: Any, limit: int = VENUE_TEXT_MAX) -> str:
    """Text a venue sent, safe for one log line: control characters and newlines escaped, quotes kept
    from closing anything, at most ``limit`` characters (with an ellipsis when cut)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit * 4:
        text = text[: limit * 4]
    safe = text.encode("unicode_escape", "backslashreplace").decode("ascii", "replace")
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"
