"""What lives on disk: the run-folder contract and its lock, resume, the run lifecycle, background launch,
checkpoints (safetensors with cards), the catalog of models and presets, export, typed-path guards.
"""
