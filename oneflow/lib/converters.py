"""Path converters for database ids.

Django's ``int`` converter takes any run of digits, and a lookup with an id
past a 64-bit integer then fails in the database driver (a 500). ``id`` takes
at most 18 digits, every one of them a valid bigint, so a longer one is a plain
404 from the URL resolver, before any view or query.
"""

from __future__ import annotations

from django.urls.converters import IntConverter

ID_MAX = 10**18 - 1  # below 2**63 - 1, the largest bigint


class IdConverter(IntConverter):
    regex = "[0-9]{1,18}"
