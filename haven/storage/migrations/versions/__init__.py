"""Migration scripts, one per schema change, named for what they do."""
