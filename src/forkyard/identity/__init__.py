"""Identity: users, sign-in, sessions, sudo, API keys, one-time tokens, MFA, SSH keys."""
