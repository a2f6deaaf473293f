"""tusk: the daemon, its gRPC server, and the Python client (SDK)."""
