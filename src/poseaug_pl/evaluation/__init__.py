"""Evaluation: metrics, report tables and figures."""
