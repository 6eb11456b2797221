"""The Vobiz API: the HTTP client and the classification of every answer into one outcome."""
