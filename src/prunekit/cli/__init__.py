"""The ``prunekit`` command line: a thin layer over the public API (see :mod:`prunekit.cli.main`)."""
