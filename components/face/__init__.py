"""Face verification and recognition: detection and alignment, the encoder, search and clustering."""
