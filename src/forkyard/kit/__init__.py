"""Small shared pieces every domain uses."""
