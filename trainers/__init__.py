"""Offline SFT, DPO, REDI and step-DPO trainers. They read exported datasets, never the store."""
