"""Command-line interface: Typer + Rich commands over the lower layers (`haven …`)."""
