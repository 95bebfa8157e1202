"""micropump wire protocol: message table (spec.py), host codec and golden vectors."""
