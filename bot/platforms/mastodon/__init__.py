"""The Mastodon adapter of the platform port: Mastodon.py and Mastodon's JSON stay here."""
