"""One attempt at one stop as plain code (the executor), the scheduler loop, a worker's collaborators."""
