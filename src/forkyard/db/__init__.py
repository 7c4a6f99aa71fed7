"""Database glue: the engine, sessions, the declarative base and migrations."""
