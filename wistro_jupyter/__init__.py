"""Wistro in Jupyter: the IPython extension, magics and widgets."""
