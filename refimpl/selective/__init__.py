"""Selective PEFT: train a chosen subset of the pretrained parameters (fixed by rule or found by a criterion)."""
