"""The offline local stack: the emulators, and the stand-in metadata server that hands local
clients their credentials."""
