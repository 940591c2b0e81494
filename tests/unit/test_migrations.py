import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_committed_migrations_agree():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # exits non-zero on a missing migration
    assert "No changes detected" in out.getvalue()
