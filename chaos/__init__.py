"""The chaos and reliability suite: scenarios under fault, each reconciled against the sandbox."""
