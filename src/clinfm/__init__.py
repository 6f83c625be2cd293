"""clinfm: pre-train models on large unlabeled health data; transfer them to small cohorts and other sites."""

__version__ = "0.1.0"
