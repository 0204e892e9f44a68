"""The HTTP API and the dashboard (``accord serve``)."""
