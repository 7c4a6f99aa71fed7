"""Second factors: TOTP, SMS and email codes, passkeys, backup codes, and sign-in challenges."""
