"""MEDS event data: read, write, validate, describe, split, join with labels, convert, synthesize."""
