"""Using a trained model outside training: ``export`` (an ONNX Runtime folder someone can ship; its graph
made by ``graph``), ``runtime`` (serving it with onnxruntime, tokenizers and numpy alone), ``dse``
(sentence-embedding index and search), ``bench`` (latency and memory) with ``memory`` (the smallest
memory cap a model runs under)."""
