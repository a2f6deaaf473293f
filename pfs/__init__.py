"""PFS: tusk's versioned file system.

Layers, innermost first:

* ``objects``  -- the object store interface (local directory, S3, memory).
* ``metadata`` -- the metadata store interface (SQLite, etcd, memory).
* ``blobs``    -- content addressing: chunking, packing, hashing, verification.
* ``tree``     -- a commit's immutable file index (Merkle tree of directory pages).
* ``api``      -- repos, branches, commits, files: the PFS service the server exposes.

Nothing in this package imports gRPC, the server or the CLI.
"""
