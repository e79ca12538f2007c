"""A creator's payout details for the manual provider: encrypted at rest, shown back masked.

The details are free text (an IBAN, a PayPal address). They are encrypted with
PAYOUT_DETAILS_KEY (Fernet: AES-128-CBC with an HMAC, from `cryptography`) before they
reach the database, decrypted only for the maintainer's `tipjar payouts export --csv`, and
shown back to the creator masked. They are never logged.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

MAX_LENGTH = 200
SHOWN = 4  # characters left visible at the end of masked details


class DetailsError(Exception):
    """Details that cannot be stored or read; the message never contains them."""


def _fernet(key: str) -> Fernet:
    if not key:
        raise DetailsError("PAYOUT_DETAILS_KEY is not set")
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise DetailsError("PAYOUT_DETAILS_KEY is not a Fernet key") from None


def clean(text: str) -> str:
    """The details as the creator meant them: one line, trimmed; refused if empty or long."""
    value = " ".join(text.split())
    if not value:
        raise DetailsError("say where you want to be paid (an IBAN or a PayPal address)")
    if len(value) > MAX_LENGTH:
        raise DetailsError(f"that is longer than {MAX_LENGTH} characters")
    return value


def encrypt(key: str, text: str) -> str:
    return _fernet(key).encrypt(clean(text).encode("utf-8")).decode("ascii")


def decrypt(key: str, ciphertext: str) -> str:
    try:
        return _fernet(key).decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise DetailsError("these details were encrypted with another PAYOUT_DETAILS_KEY") from None


def mask(text: str) -> str:
    """``DE89 3704 0044 0532 0130 00`` -> ``•••• 3000``: enough to recognise, not to use."""
    compact = text.replace(" ", "")
    if len(compact) <= SHOWN * 2:
        return "•" * len(compact)
    return "•••• " + compact[-SHOWN:]
