"""Identity errors with stable codes."""

from forkyard.kit.errors import BadRequest, Conflict, Forbidden, Unauthenticated


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"
    message = "The email or password is wrong."


class InvalidToken(BadRequest):
    code = "invalid_token"
    message = "This link or code is invalid, expired or already used."


class SessionRevoked(Unauthenticated):
    code = "session_revoked"
    message = "This session was signed out; sign in again."


class PasswordAlreadySet(Conflict):
    code = "password_already_set"
    message = "This account has a password; change it with POST /v1/auth/me/password."


class CookieSessionRequired(Forbidden):
    code = "cookie_session_required"
    message = "This needs a signed-in browser session, not an API key."
