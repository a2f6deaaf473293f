"""Generated gRPC stubs (scripts/gen-proto); do not edit."""
