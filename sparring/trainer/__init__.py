"""Training from transcripts: datasets for imitation, SPAG and SAIE, trained with TRL."""
