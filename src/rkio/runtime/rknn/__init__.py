"""ctypes binding of librknnrt.so, the RKNN runtime that runs a vision model's image encoder on the NPU.

``library`` finds, loads and checks the library; ``layouts`` declares the C structs; ``encoder`` runs one
encoder model (image in, embedding rows out).
"""

from rkio.runtime.rknn.encoder import EncoderInfo, RknnEncoder
from rkio.runtime.rknn.library import RknnLibrary, load_library

__all__ = ["EncoderInfo", "RknnEncoder", "RknnLibrary", "load_library"]
