"""Provider kinds, credentials and deployments (built with the gateway issue)."""
