"""The ``tusk`` command line: pachctl's grammar over the Python client."""
