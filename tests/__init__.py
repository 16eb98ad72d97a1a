"""Tributary's test suite."""
