"""The agent that runs inside every instance (standard library only, python3 >= 3.9)."""
