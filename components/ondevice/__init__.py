"""On-device build of the trigger-word detector: ONNX export, compression, and an onnxruntime-only runner.

Nothing here is imported at package level: `runner` must stay importable without torch.
"""
