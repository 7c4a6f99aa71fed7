"""Cookie names and how they are set: HttpOnly, Secure, SameSite, path-scoped where it helps."""

from __future__ import annotations

from fastapi import Response

from forkyard.config import Settings

ACCESS_COOKIE = "fy_access"
REFRESH_COOKIE = "fy_refresh"
CSRF_COOKIE = "fy_csrf"
SUDO_COOKIE = "fy_sudo"
SIGNUP_COOKIE = "fy_signup"
REFRESH_PATH = "/v1/auth/refresh"
VERIFY_PATH = "/v1/auth/verify-email"


def set_session_cookies(
    response: Response, settings: Settings, *, access: str, refresh: str, csrf: str
) -> None:
    secure = bool(settings.cookie_secure)
    response.set_cookie(
        ACCESS_COOKIE,
        access,
        max_age=settings.access_token_ttl_s,
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        refresh,
        max_age=settings.refresh_token_ttl_s,
        httponly=True,
        secure=secure,
        samesite="strict",
        path=REFRESH_PATH,
    )
    # Readable by the page's script so it can echo it in X-CSRF-Token (double submit).
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=settings.refresh_token_ttl_s,
        httponly=False,
        secure=secure,
        samesite="lax",
        path="/",
    )


def set_sudo_cookie(response: Response, settings: Settings, token: str) -> None:
    # Strict, never Lax: sudo must not ride on a cross-site navigation.
    response.set_cookie(
        SUDO_COOKIE,
        token,
        max_age=settings.sudo_ttl_s,
        httponly=True,
        secure=bool(settings.cookie_secure),
        samesite="strict",
        path="/v1",
    )


def set_signup_cookie(response: Response, settings: Settings, nonce: str) -> None:
    """Marks the browser that chose the password at sign-up: only there does the verification
    link keep it (see routes.verify_email)."""
    response.set_cookie(
        SIGNUP_COOKIE,
        nonce,
        max_age=settings.email_token_ttl_s,
        httponly=True,
        secure=bool(settings.cookie_secure),
        samesite="lax",
        path=VERIFY_PATH,
    )


def clear_auth_cookies(response: Response, settings: Settings) -> None:
    secure = bool(settings.cookie_secure)
    response.delete_cookie(ACCESS_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
    response.delete_cookie(
        REFRESH_COOKIE, path=REFRESH_PATH, secure=secure, httponly=True, samesite="strict"
    )
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="lax")
    response.delete_cookie(SUDO_COOKIE, path="/v1", secure=secure, httponly=True, samesite="strict")
