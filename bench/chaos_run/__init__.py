"""The chaos run's parts; bench/chaos.py is its command (and says what the run does)."""
