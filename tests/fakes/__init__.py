"""Local servers that speak external protocols (OAuth2/OIDC, Twilio) over real HTTP, and a
software WebAuthn authenticator."""
