"""Finetuning stage: the event parsers (HAN, Base, GCAA, Adv, Skip) trained with weak labels."""
