"""The FALSE workbench: Streamlit pages and the Gradio demo over the engine in ``core``."""
