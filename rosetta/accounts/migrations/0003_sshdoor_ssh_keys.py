import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_access_epoch"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="SSHKey",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "name",
                    models.CharField(help_text="The key's comment unless the user gave a name.", max_length=100),
                ),
                ("public_key", models.TextField(help_text="'<algorithm> <base64>', without the comment.")),
                (
                    "kind",
                    models.CharField(help_text="ED25519, ECDSA, RSA, ... as ssh-keygen names them.", max_length=16),
                ),
                ("bits", models.PositiveIntegerField()),
                (
                    "fingerprint",
                    models.CharField(help_text="SHA256:..., as ssh-keygen -l prints it.", max_length=64, unique=True),
                ),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("last_used", models.DateTimeField(blank=True, null=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="ssh_keys",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"verbose_name": "SSH public key", "ordering": ["created", "id"]},
        ),
    ]
