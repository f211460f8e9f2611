"""Loaders of the real datasets: one function per dataset, returning arrays and splits."""
