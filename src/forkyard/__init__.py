"""Forkyard: self-hostable cloud instances."""
