"""Model conversion: Keras -> TFLite (four precisions) and ONNX (float and int8), plus
inspection of the produced files (precision, quantization parameters, float ops left)."""
