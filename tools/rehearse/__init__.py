"""The offline rehearsal of the whole retraining loop (``make demo``): see ``rehearse.loop``."""
