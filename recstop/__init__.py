"""recstop: stop call recordings on the Vobiz voice API through a queue, never lost, never twice.

The installed layout is one namespace: ``recstop.producers`` (the Python API and the ``recstop``
command) and ``recstop.worker`` (``celery -A recstop.worker worker``). In the repository the two
live at the top level (``producers/``, ``worker/``); ``recstop/producers`` and ``recstop/worker``
are links to them, so the source tree imports exactly as the wheel installs. Importing this
package imports nothing else.
"""
