"""How stops are paced: backoff and Retry-After, the shared rate limit, urgent stops first."""
