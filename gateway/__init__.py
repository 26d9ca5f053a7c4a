"""The gateway: the lean ASGI app behind /v1 (the hot path). The Django side of
routing (admin, playground, probes, reports) lives in the routing app and may
import from here; nothing here imports it (docs/architecture.md)."""
