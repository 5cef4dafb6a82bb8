"""One module per endpoint group; each responder is a few lines around one service call."""
