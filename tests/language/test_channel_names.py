"""The channel list is written once (``orchestrator.language._channels``); every other list derives
from it."""

from __future__ import annotations

from typing import get_args

from orchestrator.channels import _base as base
from orchestrator.channels import _mail as mail
from orchestrator.config import CHANNEL_NAMES
from orchestrator.engine import _contact_policy as contact_policy
from orchestrator.engine import _explain as explain
from orchestrator.engine import _render as render
from orchestrator.ingest import _readers as readers
from orchestrator.language import _models as models
from orchestrator.language import _policy_file as policy_file
from orchestrator.language._channels import ADDRESS_FIELD, CHANNELS, CONSENT_CHANNELS, Channel, ConsentChannel


def test_the_channels_their_consent_and_their_addresses() -> None:
    assert CHANNELS == ("email", "sms", "push", "webhook") == get_args(Channel)
    assert CONSENT_CHANNELS == ("email", "sms", "push") == get_args(ConsentChannel)
    assert ADDRESS_FIELD == {"email": "email", "sms": "phone", "push": "push_token"}
    assert tuple(ADDRESS_FIELD) == CONSENT_CHANNELS


def test_every_other_list_is_the_same_one() -> None:
    assert get_args(models.Send.model_fields["channel"].annotation) == CHANNELS
    assert get_args(policy_file.CapScope) == ("all", *CHANNELS)
    for derived in (CHANNEL_NAMES, base.CHANNELS, contact_policy.CAP_CHANNELS):
        assert derived is CHANNELS
    assert mail.UNSUBSCRIBE_CHANNELS is CONSENT_CHANNELS and explain.CONSENT_CHANNELS is CONSENT_CHANNELS
    assert readers.CONSENTS == ("consent_email", "consent_sms", "consent_push")
    assert render.ADDRESS_FIELD is ADDRESS_FIELD
