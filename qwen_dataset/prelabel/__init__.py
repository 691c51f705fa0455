"""Pre-annotation backends (RapidOCR on CPU, Qwen3-VL on vLLM) behind one interface."""
