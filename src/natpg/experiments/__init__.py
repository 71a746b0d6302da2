"""Grid runner, results store and report. Uses only the trainer's public API."""
