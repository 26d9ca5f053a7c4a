"""The Django side of routing drives the live gateway too (probes, the provider admin).

pytest sees conftest fixtures only from a test's own folder and its parents, so the
gateway's fixture is imported here rather than moved up into tests/conftest.py,
which keeps the personas and the servers every folder needs.
"""

from tests.gateway.conftest import gateway

__all__ = ["gateway"]
