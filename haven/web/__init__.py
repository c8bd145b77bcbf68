"""Static assets of the web chat UI, served by the same app (arrives with the UI issue)."""
