"""The ``prunekit`` command line, a thin layer over the public API (:mod:`prunekit.cli.main`)."""
