"""Segmentation: the smp model and its card, fine-tuning and the linear probe, metrics, sliding-window
inference, whole-scene evaluation, the method comparison, and segmenting images with domain awareness
(fingerprints, auto model choice, pixel size, no-data).
"""
