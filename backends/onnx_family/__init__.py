"""The ONNX family: the SDXL pipeline exported to ONNX, run by ONNX Runtime or built into TensorRT
engines, in one diffusers-style SDXL loop."""
