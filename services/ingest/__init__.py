"""Upload intake: validate, sanitise and store uploaded images."""
