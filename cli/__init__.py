"""The command line (``accord ...``), the demo and the Python client of the HTTP API: the top layer beside ``api``."""
