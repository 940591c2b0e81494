from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """A public key is unique per user, no longer across users (see SSHKey.fingerprint)."""

    dependencies = [
        ("accounts", "0004_token_expiry"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="sshkey",
            name="fingerprint",
            field=models.CharField(help_text="SHA256:..., as ssh-keygen -l prints it.", max_length=64),
        ),
        migrations.AddConstraint(
            model_name="sshkey",
            constraint=models.UniqueConstraint(fields=("user", "fingerprint"), name="one_registration_per_user_and_key"),
        ),
    ]
