"""Taking a model beyond charrnn: a self-contained web page, ONNX."""
