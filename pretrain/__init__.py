"""Pretraining stage: UNITER-style audio-visual encoder trained with AVG contrastive losses."""
