"""The MicroFS test suite (a package, so that its modules import its helpers by name)."""
