"""Models rkio can install by itself (the CPU default model) into a models directory."""
