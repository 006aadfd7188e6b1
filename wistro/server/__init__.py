"""The long-running modes (``wistro dev`` / ``wistro start``) and talking to a running server."""
