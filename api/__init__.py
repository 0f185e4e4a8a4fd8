"""filmroll."""
