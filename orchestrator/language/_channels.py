"""The message channels, named once: which exist, which need the customer's consent, where each is addressed.

Every other list of channels (the journey language's ``Channel``, the contact policy's caps and consent,
the config's channel sections, the delivery adapters, the unsubscribe links) is derived from these.
"""

from __future__ import annotations

from typing import Literal, get_args

#: The channels that message the customer, and so need consent (``consent_<channel>``) and can be
#: unsubscribed from; a webhook calls the business instead.
ConsentChannel = Literal["email", "sms", "push"]
#: Every channel a journey can send on.
Channel = Literal[ConsentChannel, "webhook"]

#: The channel names, in the order reports and caps count them: email, sms, push, webhook.
CHANNELS: tuple[str, ...] = get_args(Channel)
#: The channels with consent: email, sms, push.
CONSENT_CHANNELS: tuple[str, ...] = get_args(ConsentChannel)
#: The customer column that holds each consent channel's address (a webhook goes to a named endpoint).
ADDRESS_FIELD: dict[str, str] = {"email": "email", "sms": "phone", "push": "push_token"}

__all__ = ["ADDRESS_FIELD", "CHANNELS", "CONSENT_CHANNELS", "Channel", "ConsentChannel"]
