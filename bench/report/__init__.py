"""Aggregation of results, verdicts against published numbers, claims, rendering."""
