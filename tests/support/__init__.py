"""Helpers shared by test tiers (fake servers)."""
