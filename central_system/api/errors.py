"""Errors the kiosk shows as they are, and the HTTP status each one travels as.

The server maps these to status codes in one exception handler; the client turns
an error answer back into the same class, so a screen catches ``KioskError``
whether the central system runs in-process or across the network.
"""

from __future__ import annotations

from typing import ClassVar


class KioskError(Exception):
    """An error whose message the kiosk shows to the user as is (HTTP 400)."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"


class NotFoundError(KioskError):
    """The thing asked for does not exist, or is not the caller's to see (HTTP 404)."""

    status_code = 404
    code = "not_found"


class NotAuthenticatedError(KioskError):
    """No credentials, or credentials that are unknown, expired or revoked (HTTP 401)."""

    status_code = 401
    code = "not_authenticated"


class ForbiddenError(KioskError):
    """Valid credentials that do not allow this call (HTTP 403)."""

    status_code = 403
    code = "forbidden"


class ConflictError(KioskError):
    """The request clashes with the current state, such as a duplicate name (HTTP 409)."""

    status_code = 409
    code = "conflict"


class TooManyRequestsError(KioskError):
    """The caller made too many calls of a kind in a short time; it may again later (HTTP 429)."""

    status_code = 429
    code = "rate_limited"


class UnavailableError(KioskError):
    """No server answers, or the one that answered is a standby (HTTP 503)."""

    status_code = 503
    code = "unavailable"


class OutcomeUnknownError(KioskError):
    """The call reached the central system but its answer did not come back.

    The action may or may not have been carried out (the server died or did not
    answer in time): the screen must not suggest simply doing it again.
    """

    code = "outcome_unknown"


ERRORS_BY_CODE: dict[str, type[KioskError]] = {
    cls.code: cls
    for cls in (
        KioskError,
        NotFoundError,
        NotAuthenticatedError,
        ForbiddenError,
        ConflictError,
        TooManyRequestsError,
        UnavailableError,
        OutcomeUnknownError,
    )
}
