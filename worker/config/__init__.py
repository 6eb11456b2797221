"""Settings.

The frozen model, each default written once, the environment read once into it, parsers, secrets, Vobiz
credentials.
"""
