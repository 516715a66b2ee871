"""Each customer's best channel: among those they can be reached on, the one they answer most.

A send step written ``channel: best(email, push, sms)`` chooses, for each instance:

- **reachable channels**: the listed channels on which the customer has an address (``email``, ``phone``,
  ``push_token``) and consent: ``consent_<channel>`` true, or no consent on record on a channel the
  contact policy leaves ``opt_out``. Dispatch applies the whole policy again when it sends;
- **responses**: each marketing message sent to the customer on a channel in the ``lookback`` (180 days)
  before now is a send; it is answered when the customer has one of the ``responses`` events
  (``session_start`` or ``purchase`` unless ``best_channel: {responses: [...]}`` says otherwise: events
  every channel can lead to, so no channel is favoured by what it alone can record) within ``within``
  (24h) after it was sent;
- **shrinkage**: the population's rate on a channel is all its answered sends over all its sends (over
  all channels where a channel has none, and 0 when nothing was ever sent). A customer's posterior mean
  on a channel is the Beta-Binomial one with ``prior`` pseudo-sends (10 unless given) at the
  population's rate: ``(answered + prior * rate) / (sends + prior)``;
- **choice**: the reachable channel with the highest posterior mean; equal means go to the order written.
  A customer reachable on none of them gets the first listed channel, and dispatch says why it did not
  go.

``best_channel: {compare: P}`` sends P percent of the instances on the first listed channel instead
(policy ``fixed:<channel>``), chosen by ``buckets("<journey>:best_channel:<step>", "<customer id>:
<entered_us>")``, independent of the holdout.

The counts come from one read of the marketing sends of the lookback and one pass of
``first_matching_after`` over the response events, for all customers at once; the population's rates are
their sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.engine._matching import first_matching_after

BEST_CHANNEL = "best_channel"


def fixed_policy(channel: str) -> str:
    """The label of the comparison share: ``fixed:email``."""
    return f"fixed:{channel}"


@dataclass(frozen=True)
class ChannelCounts:
    """Sends and answered sends per customer key and listed channel (dense ``[key, channel]``), and the
    population's rate per channel."""

    channels: tuple[str, ...]
    sends: np.ndarray
    answered: np.ndarray
    population: np.ndarray  # per channel

    def posterior(self, keys: np.ndarray, prior: float) -> np.ndarray:
        """The posterior mean response rate of each key (rows) on each channel (columns)."""
        sends = self.row(self.sends, keys)
        answered = self.row(self.answered, keys)
        return (answered + prior * self.population[None, :]) / (sends + prior)

    def row(self, table: np.ndarray, keys: np.ndarray) -> np.ndarray:
        out = np.zeros((len(keys), len(self.channels)), np.int64)
        inside = keys < table.shape[0]
        out[inside] = table[keys[inside]]
        return out


def channel_counts(
    channels: Sequence[str],
    sent_keys: np.ndarray,
    sent_channels: np.ndarray,
    sent_us: np.ndarray,
    event_customer: np.ndarray,
    event_ts: np.ndarray,
    window_us: int,
    n_customers: int,
) -> ChannelCounts:
    """Counts of sends on ``channels`` (``sent_*``, aligned) and of those answered by an event
    (``event_*``) within ``window_us`` after, per customer key."""
    listed = tuple(channels)
    code = np.full(len(sent_keys), -1, np.int64)
    for i, channel in enumerate(listed):
        code[sent_channels == channel] = i
    keep = code >= 0
    keys, code, at = sent_keys[keep].astype(np.int64), code[keep], sent_us[keep].astype(np.int64)
    found = first_matching_after(event_customer, event_ts, None, keys, at, None)
    answered = found >= 0
    answered[answered] = event_ts[found[answered]] <= at[answered] + window_us
    n = max(n_customers, int(keys.max(initial=-1)) + 1)
    width = len(listed)
    flat = keys * width + code
    sends = np.bincount(flat, minlength=n * width).reshape(n, width)
    hits = np.bincount(flat[answered], minlength=n * width).reshape(n, width)
    total_sends, total_hits = sends.sum(axis=0), hits.sum(axis=0)
    overall = float(total_hits.sum() / total_sends.sum()) if total_sends.sum() else 0.0
    population = np.where(total_sends > 0, total_hits / np.maximum(total_sends, 1), overall)
    return ChannelCounts(listed, sends, hits, population.astype(np.float64))


@dataclass(frozen=True)
class ChannelChoice:
    """Per instance: the channel chosen (index into the listed channels), whether any was reachable, and
    the figures behind it."""

    pick: np.ndarray
    reachable: np.ndarray  # bool [instance, channel]
    sends: np.ndarray  # [instance, channel]
    answered: np.ndarray
    posterior: np.ndarray


def choose_channels(
    counts: ChannelCounts, keys: np.ndarray, reachable: np.ndarray, prior: float
) -> ChannelChoice:
    """The reachable channel with the highest posterior mean for each key (the first listed when none is
    reachable; equal means go to the order written)."""
    posterior = counts.posterior(keys, prior)
    ranked = np.where(reachable, posterior, -np.inf)
    pick = np.argmax(ranked, axis=1) if len(keys) else np.zeros(0, np.int64)
    pick = np.where(reachable.any(axis=1), pick, 0)
    return ChannelChoice(
        pick=pick,
        reachable=reachable,
        sends=counts.row(counts.sends, keys),
        answered=counts.row(counts.answered, keys),
        posterior=posterior,
    )
