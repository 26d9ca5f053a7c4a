"""Hands ModelAccess to providers (providers 0004): the table stays; Django's state
drops it here, and its content type is renamed so that permissions already given
to staff (routing.*_modelaccess) carry over as providers.*_modelaccess."""

from django.db import migrations


def _rename_content_type(apps, schema_editor, *, source, target):
    content_types = apps.get_model('contenttypes', 'ContentType')
    if content_types.objects.filter(app_label=target, model='modelaccess').exists():
        return  # created by a run that had both; the old one is left to remove_stale_contenttypes
    content_types.objects.filter(app_label=source, model='modelaccess').update(app_label=target)


def forwards(apps, schema_editor):
    _rename_content_type(apps, schema_editor, source='routing', target='providers')


def backwards(apps, schema_editor):
    _rename_content_type(apps, schema_editor, source='providers', target='routing')


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('providers', '0004_model_access'),
        ('routing', '0005_operator_overview'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ModelAccess')],
        ),
        migrations.RunPython(forwards, backwards),
    ]
