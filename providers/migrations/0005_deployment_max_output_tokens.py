"""A deployment says the most its model writes in one answer (issue 13, item 6), beside
its context window, which is now bounded too; clients read both in /v1/models."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('providers', '0004_model_access'),
    ]

    operations = [
        migrations.AddField(
            model_name='deployment',
            name='max_output_tokens',
            field=models.PositiveIntegerField(blank=True, help_text='Most tokens the upstream model writes in one answer; empty if unknown.', null=True, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(1000000)]),
        ),
        migrations.AlterField(
            model_name='deployment',
            name='context_window',
            field=models.PositiveIntegerField(blank=True, help_text='Tokens the upstream model accepts, prompt and answer together; empty if unknown.', null=True, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(100000000)]),
        ),
        migrations.AddConstraint(
            model_name='deployment',
            constraint=models.CheckConstraint(condition=models.Q(('max_output_tokens__isnull', True), models.Q(('max_output_tokens__gte', 1), ('max_output_tokens__lte', 1000000)), _connector='OR'), name='providers_deployment_max_output_tokens_bounded'),
        ),
        migrations.AddConstraint(
            model_name='deployment',
            constraint=models.CheckConstraint(condition=models.Q(('max_output_tokens__isnull', True), ('context_window__isnull', True), ('max_output_tokens__lte', models.F('context_window')), _connector='OR'), name='providers_deployment_output_within_context'),
        ),
    ]
