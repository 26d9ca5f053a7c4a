"""ModelAccess moves from the routing app to providers (issue 12): the gateway reads
grants with the catalog, and the routing app is now the Django side only. The
table keeps its name, so only Django's state moves; routing 0006 lets go of it."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_key_housekeeping_schedule'),
        ('providers', '0003_credential_flag'),
        ('routing', '0005_operator_overview'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ModelAccess',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.organization')),
                        ('public_model', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='providers.publicmodel')),
                    ],
                    options={
                        'verbose_name_plural': 'model access grants',
                        'db_table': 'routing_modelaccess',
                        'constraints': [models.UniqueConstraint(fields=('public_model', 'organization'), name='routing_modelaccess_unique')],
                    },
                ),
            ],
        ),
    ]
