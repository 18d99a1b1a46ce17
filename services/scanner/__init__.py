"""Scanner service: decode, hash, score and decide on uploaded images."""
