"""PPS: tusk's pipeline system (specs, datums, jobs, workers, runners).

Nothing in this package imports gRPC, the server or the CLI.
"""
