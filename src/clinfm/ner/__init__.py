"""Clinical named-entity recognition: brat and CoNLL in, TransformerCRF / BERT-CRF, SamBD, the
paper's token-level scores beside entity-level ones, brat out."""
