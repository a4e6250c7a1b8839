"""The page and the API surface of the Space: Gradio components and events over `services/`."""
