"""Feature extraction from video: decoding, the three networks, the extract pipeline."""
