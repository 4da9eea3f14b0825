"""Benchmarks: each times our implementation against a plain reference in the same run and reports the ratio.

A ratio survives a noisy or shared machine; an absolute time does not. ``dinoxfer bench`` runs them.
"""
