"""Claim-PT: a transformer pre-trained on patients' sequences of visits of claims codes, fine-tuned
per population-specific task (Zeng, Lin, Liu; arXiv:2106.13095)."""
