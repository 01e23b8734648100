"""The web app: signup, confirm, unsubscribe and provider webhooks (see webhooks.py)."""
