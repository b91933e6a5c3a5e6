"""wtm test suite."""
