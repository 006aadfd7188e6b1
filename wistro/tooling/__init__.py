"""Tools over a loaded project: ``wistro check``, graphs, ``wistro init`` templates, terminal rendering."""
