"""A provider may be sent the W3C trace context of each upstream attempt (issue 14, item 1);
off for every provider, existing or new, until an operator turns it on."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('providers', '0005_deployment_max_output_tokens'),
    ]

    operations = [
        migrations.AddField(
            model_name='provider',
            name='propagate_trace_context',
            field=models.BooleanField(default=False, help_text="Send the W3C traceparent of each upstream attempt to this provider (when the request is traced), so its own traces join OneFlow's."),
        ),
    ]
