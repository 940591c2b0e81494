from django.db import models


class UsedToken(models.Model):
    """A one-time access token that was redeemed, kept until it expires (rosetta.gateway.used_tokens):
    every gateway process on every machine sharing the database sees it."""

    nonce = models.CharField(max_length=64, primary_key=True)
    expires = models.BigIntegerField(db_index=True)  # seconds since the epoch
