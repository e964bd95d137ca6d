"""``jtrades sim``: a Tradovate-protocol simulator over real sockets, for tests and rehearsals."""
