"""Contrastive pretraining: the FALSE loss (FNSD, FNCC) beside InfoNCE, the SimCLR and MoCo v2 models and
their steps, the optimizer and schedule, the trainer (single process or torchrun ranks).
"""
