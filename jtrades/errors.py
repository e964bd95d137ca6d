"""Exceptions named by what must happen next.

Callers catch by consequence, not by origin: a CLI turns any ``JtradesError`` into one line and
exit 1; the daemon stops on ``Fatal``; the engine records ``SkipAndRecord`` on the signal and carries
on; the retry policy retries only ``Transient``; an ``OutcomeUnknown`` hands the intent to
reconciliation instead of re-sending it.
"""

from __future__ import annotations


class JtradesError(Exception):
    """Base: the message is safe to show a user (never contains a secret)."""

    # the daemon logged it already (``daemon.failed``): in JSON mode the CLI adds no plain line
    logged: bool = False


# --- stop / fail closed -------------------------------------------------------------------
class Fatal(JtradesError):
    """The process cannot go on safely; stop (systemd restarts us)."""


class ConfigError(Fatal):
    """Configuration is invalid; nothing was started."""


class StorageUnavailable(Fatal):
    """The database cannot be reached: fail closed, never send without a durable intent."""


class SecretKeyMissing(Fatal):
    """A ciphertext was written with a key we no longer have."""


# --- user errors (CLI exit 1) -------------------------------------------------------------
class UserError(JtradesError):
    """Bad input from a person: a one-line message, nothing written."""


class InvalidInput(UserError):
    """A value is malformed or out of range."""


class NotFound(UserError):
    """The named thing does not exist (or is not visible to the caller)."""


class NameTaken(UserError):
    """A unique name is already used."""


class PermissionDenied(UserError):
    """The caller may not do this to that object."""


class Conflict(UserError):
    """The object is in a state that forbids the change."""


# --- skip and record ----------------------------------------------------------------------
class SkipAndRecord(JtradesError):
    """This item fails; record why on its row and continue with the next."""


class InvalidSignal(SkipAndRecord):
    """A webhook delivery that cannot become a signal (answered 4xx)."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class BrokerRejected(SkipAndRecord):
    """The broker said no; its text is kept for the user."""


# --- retry --------------------------------------------------------------------------------
class Transient(JtradesError):
    """Worth retrying with backoff (network blip, 429, 5xx before anything was sent)."""


class TransientBrokerError(Transient):
    """The broker could not be reached or asked us to back off."""


class BrokerPenalty(TransientBrokerError):
    """A penalty ticket on a request: nothing more before ``wait_s`` (its ``p-time``); asking
    sooner only lengthens the lock."""

    def __init__(self, message: str, wait_s: float) -> None:
        super().__init__(message)
        self.wait_s = wait_s


class NotPricedYet(TransientBrokerError):
    """The paper broker has no market price yet to fill at (none since the daemon started):
    nothing changed, and the next alert with a price makes it possible. A "not yet", not a
    refusal: recorded as not sent, so a flatten waits for the price and never counts it
    toward giving up (``engine.flatten``)."""


class ConfigChanged(Transient):
    """A sub-account or trader a signal was planned for was deleted before its intents were
    written: nothing was stored or sent, and a re-send plans against what is left."""


# --- reconcile ----------------------------------------------------------------------------
class OutcomeUnknown(JtradesError):
    """A request left but its answer never came: look it up by clOrdId, never blindly re-send."""


# --- broker auth --------------------------------------------------------------------------
class BrokerAuthError(JtradesError):
    """Login failed for a reason a retry will not fix (wrong password, unknown app)."""


class CaptchaRequired(BrokerAuthError):
    """Tradovate wants a human: log in once on the website, or connect with OAuth."""


class LoginRefused(BrokerAuthError):
    """A login was sent and Tradovate refused it (the credentials): sent again, it spends the
    login budget and walks into the captcha lock. A session whose renewal ends in this fails."""


class LoginCaptcha(LoginRefused, CaptchaRequired):
    """A login was sent and Tradovate answered with a captcha: retrying extends the lock."""
