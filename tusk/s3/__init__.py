"""S3's REST API over PFS (the daemon's gateway) and over fixed buckets.

Modules, by job: :mod:`~tusk.s3.backend` (the interface the server calls:
:class:`~tusk.s3.backend.BucketResolver`, :class:`~tusk.s3.backend.Bucket`),
:mod:`~tusk.s3.server` (HTTP handling, :class:`~tusk.s3.server.S3Server`),
:mod:`~tusk.s3.sigv4` (signature checks, aws-chunked bodies),
:mod:`~tusk.s3.xml` (answers and errors), :mod:`~tusk.s3.names` (bucket names,
key checks), :mod:`~tusk.s3.pfs_backend` (buckets over PFS) and
:mod:`~tusk.s3.multipart` (multipart uploads stored as chunk refs).
"""
