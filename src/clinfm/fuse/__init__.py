"""Multimodal fusion of lab tests and clinical notes (MEDFuse)."""
