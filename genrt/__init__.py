"""genrt: on-device generation with onnxruntime (no PyTorch at run time)."""
from genrt.faces import FaceGenerator
from genrt.poems.generator import Poem, PoemGenerator
from genrt.poems.options import GenerationOptions

__version__ = "0.1.0"

__all__ = ["FaceGenerator", "GenerationOptions", "Poem", "PoemGenerator", "__version__"]
