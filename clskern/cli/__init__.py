"""The ``clskern`` command line (``clskern.cli.main:main``)."""
