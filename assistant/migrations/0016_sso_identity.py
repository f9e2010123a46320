"""Single sign-on users are matched on their provider's issuer and subject, not their username
(issue 19); the same row keeps the provider's standing for their API tokens."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('assistant', '0015_audit_models_moved'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='SsoIdentity',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('issuer', models.CharField(max_length=300)),
                ('subject', models.CharField(max_length=255)),
                ('refresh_token', models.TextField(blank=True, help_text='Encrypted (assistant/sso.py)')),
                ('confirmed_at', models.DateTimeField(blank=True, help_text='When the provider last vouched for the user', null=True)),
                ('lapsed_at', models.DateTimeField(blank=True, help_text="When the provider refused to renew the user's sign-in", null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='sso_identity', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'single sign-on identity',
                'verbose_name_plural': 'single sign-on identities',
                'constraints': [models.UniqueConstraint(fields=('issuer', 'subject'), name='sso_identity_unique_sub')],
            },
        ),
    ]
