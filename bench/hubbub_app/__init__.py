"""The handlers and configuration hubbub runs in the benchmark."""
