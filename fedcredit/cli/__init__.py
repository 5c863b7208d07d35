"""Command line interface (``fedcredit ...``), one module per command group."""
