"""Atomic writes of the QDQ model, its recipe and the HTML report."""
