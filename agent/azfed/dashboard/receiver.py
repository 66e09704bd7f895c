"""The panel's and the tab's only way to the receiver: GET with the plugin's own timeout. Any
failure is a ReceiverUnavailable the page shows in place of the data; Horizon goes on."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from azfed.errors import AzfedError
from django.conf import settings

DEFAULT_TIMEOUT_S = 3.0


class ReceiverUnavailable(AzfedError):
    """The receiver did not answer, or not with what the page needs: the page says so."""


def base_url() -> str:
    url = getattr(settings, "AZFED_RECEIVER_URL", None)
    if not url:
        raise ReceiverUnavailable(
            "AZFED_RECEIVER_URL is not set in Horizon's local_settings.py: set it to the azfed "
            "receiver's address (e.g. http://receiver.example:8790)"
        )
    return str(url).rstrip("/")


def get(path: str, **query: str) -> Any:
    """The receiver's JSON answer to GET `path`; a 404 is None (nothing known of it)."""
    url = base_url() + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    timeout = float(getattr(settings, "AZFED_RECEIVER_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http(s) only)
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise ReceiverUnavailable(
            f"the receiver at {url} answered {err.code}: {_message(err)}"
        ) from err
    except (OSError, ValueError) as err:  # refused, timed out, not JSON
        raise ReceiverUnavailable(f"the receiver at {url} does not answer: {err}") from err


def _message(err: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(err.read()).get("message", err.reason))
    except (OSError, ValueError, AttributeError):
        return str(err.reason)
