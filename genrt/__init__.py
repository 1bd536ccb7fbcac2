"""genrt: on-device generation with onnxruntime (no PyTorch at run time)."""
from genrt.faces import FaceGenerator
from genrt.text.generator import Poem, PoemGenerator
from genrt.text.options import GenerationOptions

__version__ = "0.1.0"

__all__ = ["FaceGenerator", "GenerationOptions", "Poem", "PoemGenerator", "__version__"]
