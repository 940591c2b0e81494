from django.db import models


class LoginFailures(models.Model):
    """Failed web logins of one account, or from one client address, in the current window.

    In the database rather than a per-process cache: every web process counts alike, and a
    restart does not reset the count. ``key`` is a digest: attempted usernames are sometimes
    passwords typed into the wrong field, and must not be kept."""

    key = models.CharField(max_length=64, primary_key=True)
    window_end = models.DateTimeField(db_index=True)
    count = models.PositiveIntegerField(default=0)
