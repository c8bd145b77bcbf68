"""The web chat UI: static ES modules, styles, message catalogues and vendored libraries, served by
``haven.server.web`` at ``/`` (no Python code here; see docs/web-ui.md)."""
