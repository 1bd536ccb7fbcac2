"""Text generation: tokenizer, options, logit processors, search, and the ONNX poem model."""
