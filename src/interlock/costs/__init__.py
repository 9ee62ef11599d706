"""costs package."""
