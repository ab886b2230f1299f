"""One module per command group; a command resolves name-or-index, calls the client and renders."""
