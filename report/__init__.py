"""The run report (HTML and JSON) and the CSV exports: reads a run's metrics and frames, writes no database row."""
