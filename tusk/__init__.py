"""tusk: the daemon, its gRPC server, and the Python client (SDK)."""

import os

# gRPC's fork handlers are for programs that use gRPC again in a forked child.
# tusk never does, but pfs.direct forks chunker children while gRPC threads
# run; with the handlers on, such a child now and then died of SIGSEGV inside
# them (about 1 put in 15 under pytest) and the CLI logged a warning per fork.
# Read once, when gRPC initialises: importing any tusk module first sets it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
