"""The words and shapes every part shares.

The vocabulary (states, outcomes, reasons, events), errors, stop requests and their validation, status
records, ids, redaction. Depends on nothing else of recstop.
"""
