"""The Space's logic: plain Python that never imports gradio, so it can be tested and benchmarked alone."""
