"""One module per chaos scenario."""
