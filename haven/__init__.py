"""Haven: a self-hosted, sovereign AI assistant server for open-weight GGUF models.

Layers, imports pointing down only:
``cli`` and ``server`` → ``storage``, ``audit``, ``models`` → ``engine``.
``errors`` and ``settings`` are shared by every layer.
"""

__version__ = "0.1.0"
