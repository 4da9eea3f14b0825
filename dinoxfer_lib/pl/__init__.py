"""Figures: functions take results (and ``ax=None`` where one axes suffices) and return a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so a notebook shows each exactly once
(the returned object, rendered by ``%matplotlib inline``) and long runs do not accumulate open figures.
"""
