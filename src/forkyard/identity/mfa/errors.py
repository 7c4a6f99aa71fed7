"""MFA errors with stable codes."""

from forkyard.kit.errors import BadRequest, Conflict, NotFound, Unauthenticated


class InvalidCode(BadRequest):
    code = "invalid_code"
    message = "The code is wrong, expired or already used."


class ChallengeInvalid(Unauthenticated):
    code = "mfa_challenge_invalid"
    message = "This sign-in challenge is invalid, expired or used up; sign in again."


class NoPendingEnrollment(NotFound):
    code = "no_pending_enrollment"
    message = "There is no enrollment in progress for this factor; begin again."


class FactorUnavailable(BadRequest):
    code = "factor_unavailable"
    message = "That factor is not set up on this account."


class WebauthnFailed(BadRequest):
    code = "webauthn_failed"
    message = "The passkey response could not be verified."


class TooManyCodes(Conflict):
    code = "too_many_codes"
    message = "Too many codes were sent for this request; start again later."
