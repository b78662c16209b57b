"""The memory: a bounded history of what the cameras saw and were asked, searchable on the board.

`store` is the SQLite database (FTS5) and its snapshot files, `recorder` the thread that writes moments
off the hot path, `query` the parsing of a user's search into safe FTS5 syntax.
"""
