"""Language servers inside instances, over WebSockets (tag lsp; the node's side: node/lsp.py)."""
