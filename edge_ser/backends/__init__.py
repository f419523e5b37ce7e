"""Inference runtimes behind one interface (TFLite via ai-edge-litert or tflite-runtime; onnxruntime)."""
