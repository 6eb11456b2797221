"""Redis as recstop's state.

The key layout, the Lua scripts and their typed replies, the stop store (every transition one script),
results, task events, dead letters, the in-flight protocol, the Redis client.
"""
