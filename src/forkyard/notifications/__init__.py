"""Notifications: notices for people, made from events by subscribers, shown in the app and
emailed as each user's settings say (security notices always)."""
